-- 3: what replicas share. Which versions the cluster keeps loaded or unloaded (NULL: loaded on first
-- request), and a notification on channel yunmo_changes, sent when the transaction that changes models,
-- versions, tenants or keys commits, whose payload names the table.
ALTER TABLE versions ADD COLUMN desired_state TEXT CHECK (desired_state IN ('loaded', 'unloaded'));
CREATE FUNCTION yunmo_notify_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('yunmo_changes', TG_TABLE_NAME);
    RETURN NULL;
END
$$;
CREATE TRIGGER models_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON models
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_notify_change();
CREATE TRIGGER versions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON versions
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_notify_change();
CREATE TRIGGER tenants_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON tenants
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_notify_change();
CREATE TRIGGER api_keys_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON api_keys
    FOR EACH STATEMENT EXECUTE FUNCTION yunmo_notify_change();
