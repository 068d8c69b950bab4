-- SECRET input values of executions, kept apart from `executions.inputs` (which holds
-- `******`) so that workers in other processes can run them. Never read by the API or pages.
CREATE TABLE execution_secrets (
    execution_id    text        PRIMARY KEY REFERENCES executions (id) ON DELETE CASCADE,
    inputs          jsonb       NOT NULL
);
