-- Inserts the probe (pg_temp._ws_probe) into the table: the whole batch in one statement. If prod refuses
-- a row of it, the batch is split in two and each half tried again (in a subtransaction), down to the
-- single rows prod refuses, which are rejected with prod's message (and its SQLSTATE and constraint) into
-- pg_temp._ws_rejects. A row refused for a reference to a row of the batch not inserted yet (23503) is
-- retried in a second pass, with the other such rows. The number of rows inserted goes to
-- pg_temp._ws_inserted. The update path (engine/update/) runs the same block with an UPDATE as its range.
--
-- Only the errors a row can cause are caught (the conditions below: load/refusals.py ROW_REFUSALS, a test
-- holds the two equal), any other error rolls the unit back.
--
-- The block is the same for every table: what varies comes in as transaction-local settings (see
-- load/blocks.py BlockSettings): websync.insert_range (the INSERT, or UPDATE, of the probe's rows of pass $1
-- from _ws_row $2 to $3 into the table) and websync.key (the key column).
DO $websync$
DECLARE
    key_column text := current_setting('websync.key');
    los bigint[];
    his bigint[];
    lo bigint;
    hi bigint;
    mid bigint;
    n bigint;
    total bigint := 0;
    indexed boolean := false;
    state text;
    msg text;
    detail text;
    cname text;
    reason text;
BEGIN
    FOR pass_no IN 1..2 LOOP
        SELECT ARRAY[min(_ws_row)], ARRAY[max(_ws_row)] INTO los, his FROM pg_temp._ws_probe WHERE _ws_pass = pass_no;
        WHILE cardinality(los) > 0 LOOP
            lo := los[cardinality(los)];
            hi := his[cardinality(his)];
            los := los[1:cardinality(los) - 1];
            his := his[1:cardinality(his) - 1];
            CONTINUE WHEN lo IS NULL;
            BEGIN
                EXECUTE current_setting('websync.insert_range') USING pass_no, lo, hi;
                GET DIAGNOSTICS n = ROW_COUNT;
                total := total + n;
            EXCEPTION
                WHEN data_exception OR integrity_constraint_violation OR with_check_option_violation
                     OR program_limit_exceeded OR plpgsql_error THEN
                GET STACKED DIAGNOSTICS state = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, detail = PG_EXCEPTION_DETAIL,
                                        cname = CONSTRAINT_NAME;
                IF NOT indexed THEN
                    CREATE INDEX ON pg_temp._ws_probe (_ws_row);
                    indexed := true;
                END IF;
                SELECT min(_ws_row), max(_ws_row) INTO lo, hi
                  FROM pg_temp._ws_probe WHERE _ws_pass = pass_no AND _ws_row BETWEEN lo AND hi;
                IF lo < hi THEN
                    mid := lo + (hi - lo) / 2;
                    los := los || ARRAY[mid + 1, lo];
                    his := his || ARRAY[hi, mid];
                ELSIF pass_no = 1 AND state = '23503' THEN
                    UPDATE pg_temp._ws_probe SET _ws_pass = 2 WHERE _ws_row = lo;
                ELSE
                    reason := msg || CASE WHEN detail = '' OR state IN ('23514', '23502') THEN ''
                                          ELSE ' (' || detail || ')' END;
                    EXECUTE format('INSERT INTO pg_temp._ws_rejects (_ws_row, id, reason, state, constraint_name) '
                                   || 'SELECT _ws_row, %I::text, $2, $3, $4 FROM pg_temp._ws_probe WHERE _ws_row = $1',
                                   key_column)
                      USING lo, reason, state, nullif(cname, '');
                END IF;
            END;
        END LOOP;
    END LOOP;
    INSERT INTO pg_temp._ws_inserted (n) VALUES (total);
END
$websync$;
