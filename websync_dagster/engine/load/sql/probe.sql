-- Casts every staged row (pg_temp._ws_stage, all text) into the probe table (pg_temp._ws_probe: prod's
-- types and CHECK constraints) in one statement; if a row refuses, row by row, recording why each bad row
-- fails in pg_temp._ws_rejects.
--
-- Only the errors a row can cause are caught (the conditions below: load/refusals.py ROW_REFUSALS, a test
-- holds the two equal). Any other error (out of memory, a full disk, an extension's internal error) is not
-- the row's fault: it is not caught, and the unit rolls back.
--
-- A CHECK's or NOT NULL's detail is the whole failing row (told by SQLSTATE, in whatever language prod
-- speaks): left out of the reason, the reject file has the row already.
--
-- The block is the same for every table: what varies comes in as transaction-local settings (see
-- load/blocks.py BlockSettings): websync.probe_all (the INSERT ... SELECT of the whole stage),
-- websync.probe_one (the same for the row $1), websync.key (the key column), websync.table (the table's
-- name, which prod's messages give as "_ws_probe").
DO $websync$
DECLARE
    key_column text := current_setting('websync.key');
    table_name text := current_setting('websync.table');
    r bigint;
    state text;
    msg text;
    detail text;
    reason text;
BEGIN
    BEGIN
        EXECUTE current_setting('websync.probe_all');
    EXCEPTION
        WHEN data_exception OR integrity_constraint_violation OR with_check_option_violation
             OR program_limit_exceeded OR plpgsql_error THEN
        FOR r IN SELECT _ws_row FROM pg_temp._ws_stage ORDER BY _ws_row LOOP
            BEGIN
                EXECUTE current_setting('websync.probe_one') USING r;
            EXCEPTION
                WHEN data_exception OR integrity_constraint_violation OR with_check_option_violation
                     OR program_limit_exceeded OR plpgsql_error THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL;
                reason := replace(msg, '"_ws_probe"', '"' || table_name || '"')
                          || CASE WHEN detail = '' OR state IN ('23514', '23502') THEN ''
                                  ELSE ' (' || detail || ')' END;
                EXECUTE format('INSERT INTO pg_temp._ws_rejects (_ws_row, id, reason) '
                               || 'SELECT _ws_row, %I, $2 FROM pg_temp._ws_stage WHERE _ws_row = $1', key_column)
                  USING r, reason;
            END;
        END LOOP;
    END;
END
$websync$;
