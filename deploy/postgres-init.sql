-- One database per service: each owns its tables and its Alembic history.
CREATE DATABASE orchestrator;
CREATE DATABASE sms;
CREATE DATABASE whatsapp;
CREATE DATABASE email;
CREATE DATABASE voice;
