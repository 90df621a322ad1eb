-- The databases `shopfloor stack up` creates (stack/postgres.py DATABASES), owned by the shopfloor role.
CREATE DATABASE mlflow OWNER shopfloor;
CREATE DATABASE mlflow_auth OWNER shopfloor;
CREATE DATABASE prefect OWNER shopfloor;
