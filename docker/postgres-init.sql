-- The application role: owns its database, but is no superuser and cannot bypass row-level security.
CREATE ROLE outputhub LOGIN PASSWORD 'outputhub-change-me' NOSUPERUSER NOBYPASSRLS;
CREATE DATABASE outputhub OWNER outputhub;
