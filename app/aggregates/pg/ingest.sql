-- The PostgreSQL write pass of a batch: @INGEST@ (events as JSON) or @INGEST_STAGED@ (events COPYed
-- into chiso_stage), rendered and installed by app.aggregates.pgpass under names carrying the hash
-- of the rendered SQL. This file holds the order of the pass: staging, locks, the tables touched in
-- the lock order of app.aggregates.writes. The rules it applies are spelled beside their Python
-- twins and rendered in: at-signed NAMEs and NAME(alias)es come from
--   app.aggregates.dossier  the merge (BATCH_STATES, MERGE_STATES, RAW, DERIVED, IGNORED, WITH_TERM)
--   app.aggregates.contrib  the contributions (STATE, CONTRIBUTIONS, ORPHAN_ROW, TOTAL_FILTERS,
--                           ELAPSED_MS, HIST_WHERE, COHORT_DUE_WHERE, OPEN_DUE_WHERE, MARK_DAY)
--   app.aggregates.histogram  BUCKET (bucket_of), HIST_PACK and HIST_ADD (app.db.types.hist_*);  app.aggregates.silent  RECORD_ACCEPTED
--   app.aggregates.counters  the counter lists (DAY_..., TOT_...);  app.db.meta  the data version's slots
-- Functions are separated by a line holding only "$fn$;".

CREATE OR REPLACE FUNCTION @TEMP_TABLES@() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
  IF to_regclass('pg_temp.chiso_stage') IS NULL THEN
    CREATE TEMP TABLE chiso_stage (LIKE dossier_event) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_new (LIKE dossier_event) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_st (
      unit_code varchar(8), dossier_id varchar(64), sign int,
      recv_at timestamptz, recv_event_id varchar(128), channel varchar(16), recv_due_at timestamptz,
      recv_sector varchar(64), res_at timestamptz, res_event_id varchar(128), res_due_at timestamptz,
      wd_at timestamptz, wd_event_id varchar(128), chg_at timestamptz, chg_event_id varchar(128),
      chg_due_at timestamptz, supplements int, oth_sector varchar(64), oth_sector_at timestamptz,
      oth_sector_event_id varchar(128), event_days text,
      sector varchar(64), eff_due_at timestamptz, end_at timestamptz, ok_766 boolean, term varchar(16), ignored_at timestamptz,
      merged boolean DEFAULT false
    ) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_rollup (unit_code varchar(8), above varchar(8)) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_dday (unit_code varchar(8), sector varchar(64), day date, @DAY_TYPED@) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_dhist (unit_code varchar(8), sector varchar(64), day date, bucket int, n bigint) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_dopen (unit_code varchar(8), sector varchar(64), hour timestamptz, n bigint) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_ddue (unit_code varchar(8), sector varchar(64), recv_day date, due_day date, n bigint) ON COMMIT DELETE ROWS;
    CREATE TEMP TABLE chiso_dtot (unit_code varchar(8), sector varchar(64), @TOT_TYPED@) ON COMMIT DELETE ROWS;
  END IF;
END
$fn$;

-- A batch posted to the API: the events as one JSON document.
CREATE OR REPLACE FUNCTION @INGEST@(p_events json, p_rollup json, p_tz text, p_now timestamptz, p_slot int)
RETURNS TABLE (unit_code varchar, event_id varchar) LANGUAGE plpgsql AS $fn$
BEGIN
  PERFORM @TEMP_TABLES@();
  INSERT INTO chiso_stage SELECT * FROM json_populate_recordset(NULL::dossier_event, p_events);
  RETURN QUERY SELECT * FROM @INGEST_STAGED@(p_rollup, p_tz, p_now, p_slot);
END
$fn$;

-- The events waiting in chiso_stage (filled by @INGEST@, or by COPY in `chiso import`).
CREATE OR REPLACE FUNCTION @INGEST_STAGED@(p_rollup json, p_tz text, p_now timestamptz, p_slot int)
RETURNS TABLE (unit_code varchar, event_id varchar) LANGUAGE plpgsql
SET jit = off  -- a batch is small; and a disabled join method's cost would trigger JIT compiling (seconds)
AS $fn$
#variable_conflict use_column
BEGIN
  -- 1. events, in key order; duplicates of stored or archived events skipped (app.db.models.event_log):
  -- the units' locks first, then a look at the log (any month: a copy may carry another occurred_at)
  -- and at the keys of archived months, each statement seeing what the writers before committed
  PERFORM @EVENT_LOCKS(chiso_stage)@;
  -- the log's months and the archived keys through their indexes, whatever their statistics say
  -- (stale, they make small tables of them, read or hashed whole for every batch): each month
  -- probed once with the batch's hashes, the pairs found compared in a hashed NOT IN (not a join,
  -- which enable_hashjoin would send back to a nested loop; the log's columns are never null), then
  -- each event's archived key
  PERFORM set_config('enable_hashjoin', 'off', true);
  PERFORM set_config('enable_mergejoin', 'off', true);
  PERFORM set_config('enable_seqscan', 'off', true);
  INSERT INTO chiso_new
  SELECT j.* FROM chiso_stage j
  WHERE (j.unit_code, j.event_id) NOT IN (@EVENTS_STORED(chiso_stage)@)
    AND NOT EXISTS (SELECT 1 FROM event_key k WHERE k.key = @EVENT_KEY(j)@);
  PERFORM set_config('enable_seqscan', 'on', true);
  PERFORM set_config('enable_hashjoin', 'on', true);
  PERFORM set_config('enable_mergejoin', 'on', true);
  INSERT INTO dossier_event SELECT n.* FROM chiso_new n ORDER BY n.unit_code, n.event_id;

  -- events dated ahead of their arrival (within the skew allowance): reads skip them until due
  IF EXISTS (SELECT 1 FROM chiso_new n WHERE n.occurred_at > p_now) THEN
    INSERT INTO dossier_future (unit_code, dossier_id, at)
    SELECT DISTINCT n.unit_code, n.dossier_id, n.occurred_at FROM chiso_new n WHERE n.occurred_at > p_now
    ORDER BY 1, 2, 3 ON CONFLICT DO NOTHING;
    DELETE FROM dossier_future f WHERE f.at < p_now - interval '1 day';
  END IF;

  -- Temporary tables have no statistics: their joins are planned as hash joins (a nested loop on a
  -- guessed single row rescans them per row); joins with the big tables keep their index lookups.
  PERFORM set_config('enable_nestloop', 'off', true);

  -- 2. each touched dossier's state from this batch's events alone (sign 0): each field keeps its
  -- winner by (occurred_at, event_id), ids compared as binary strings
@BATCH_STATES@
  INSERT INTO chiso_st
  SELECT d.unit_code, d.dossier_id, 0, @RAW(d)@, @DERIVED(d)@ FROM (@WITH_TERM(raw)@) d;

  -- 3. dossiers seen for the first time are inserted with that state (sign 1: nothing to take
  -- away). The insert waits for a concurrent inserter of the same dossier to finish, so a row that
  -- already exists is committed by the time it is locked below.
  WITH ins AS (
    INSERT INTO dossier AS d (unit_code, dossier_id, @RAWNAMES@, sector, eff_due_at, end_at, ok_766)
    SELECT b.unit_code, b.dossier_id, @RAW(b)@, b.sector, b.eff_due_at, b.end_at, b.ok_766
    FROM chiso_st b WHERE b.sign = 0 ORDER BY b.unit_code, b.dossier_id
    ON CONFLICT DO NOTHING RETURNING d.unit_code, d.dossier_id
  )
  UPDATE chiso_st b SET sign = 1 FROM ins WHERE b.sign = 0 AND b.unit_code = ins.unit_code AND b.dossier_id = ins.dossier_id;

  -- the others: lock the stored rows in key order and keep their states (sign -1), each found
  -- through dossier's key whatever its statistics say (app.aggregates.pgpass, WITH_TERM_LOCKED)
  PERFORM set_config('enable_nestloop', 'on', true);
  PERFORM set_config('enable_seqscan', 'off', true);
  INSERT INTO chiso_st
  SELECT d.unit_code, d.dossier_id, -1, @RAW(d)@, d.sector, d.eff_due_at, d.end_at, d.ok_766, d.term, @IGNORED(d)@
  FROM (@WITH_TERM_LOCKED@) d;
  PERFORM set_config('enable_seqscan', 'on', true);
  PERFORM set_config('enable_nestloop', 'off', true);

  -- merged (sign 1): the stored state and the batch's, field by field, the later winner kept
  WITH m AS (
@MERGE_STATES@
  )
  INSERT INTO chiso_st
  SELECT d.unit_code, d.dossier_id, 1, @RAW(d)@, @DERIVED(d)@, true FROM (@WITH_TERM(m)@) d;

  -- the stored rows through their key whatever dossier's statistics say (stale, they make a small
  -- table of it: a scan of the whole table per batch; without seqscan, a hash of the whole primary
  -- key read in order: 15 ms a batch of 100 at 50,000 dossiers, `bench.stages --live`)
  PERFORM set_config('enable_nestloop', 'on', true);
  PERFORM set_config('enable_seqscan', 'off', true);
  PERFORM set_config('enable_hashjoin', 'off', true);
  PERFORM set_config('enable_mergejoin', 'off', true);
  UPDATE dossier d SET
    recv_at = s.recv_at, recv_event_id = s.recv_event_id, channel = s.channel, recv_due_at = s.recv_due_at,
    recv_sector = s.recv_sector, res_at = s.res_at, res_event_id = s.res_event_id, res_due_at = s.res_due_at,
    wd_at = s.wd_at, wd_event_id = s.wd_event_id, chg_at = s.chg_at, chg_event_id = s.chg_event_id,
    chg_due_at = s.chg_due_at, supplements = s.supplements, oth_sector = s.oth_sector,
    oth_sector_at = s.oth_sector_at, oth_sector_event_id = s.oth_sector_event_id, event_days = s.event_days,
    sector = s.sector, eff_due_at = s.eff_due_at, end_at = s.end_at, ok_766 = s.ok_766
  FROM chiso_st s
  WHERE s.merged AND d.unit_code = s.unit_code AND d.dossier_id = s.dossier_id;
  PERFORM set_config('enable_seqscan', 'on', true);
  PERFORM set_config('enable_hashjoin', 'on', true);
  PERFORM set_config('enable_mergejoin', 'on', true);
  DELETE FROM chiso_st s WHERE s.sign = 0;
  PERFORM set_config('enable_nestloop', 'off', true);

  -- the slot of this pass's rollup rows: the first from p_slot on that no other pass holds until it
  -- commits, so that up to ROLLUP_SLOTS passes at once do not queue on the same rows of a province
  -- and of the nation (bench/README.md, "Rollup slots that no two passes share"); every slot held:
  -- p_slot, whose rows wait their turn. The fresh path (app.ingest.fresh) keeps the slot it is given.
  FOR i IN 0 .. @ROLLUP_SLOTS@ - 1 LOOP
    IF pg_try_advisory_xact_lock(@SLOT_LOCK_CLASS@, (p_slot + i) % @ROLLUP_SLOTS@) THEN
      p_slot := (p_slot + i) % @ROLLUP_SLOTS@;
      EXIT;
    END IF;
  END LOOP;

  -- 4. contributions (app.aggregates.contrib: Delta.add and its SQL spelling), new minus old, per
  -- unit, own sector and day, and the all-sector rows ('*') as a grouping set
  WITH c AS (
    SELECT @STATE(s)@
    FROM chiso_st s
  ),
  w AS (  -- one row per state and kind of day it touches, with every counter it adds on that day
    SELECT c.unit_code, c.sector, v.*
    FROM c CROSS JOIN LATERAL (VALUES @CONTRIBUTIONS@) v(day, @DAY_COLS@)
    WHERE v.day IS NOT NULL
    UNION ALL  -- a dossier without its receipt: its events by day are orphans
    SELECT c.unit_code, c.sector, je.key::date, @ORPHAN_ROW@
    FROM c CROSS JOIN LATERAL json_each_text(c.event_days::json) je
    WHERE NOT c.has_recv AND c.event_days <> '{}'
  )
  INSERT INTO chiso_dday
  SELECT w.unit_code, CASE WHEN grouping(w.sector) = 1 THEN '*' ELSE w.sector END, w.day, @DAY_SUMS(w)@
  FROM w GROUP BY GROUPING SETS ((w.unit_code, w.sector, w.day), (w.unit_code, w.day))
  HAVING @DAY_NONZERO(w)@;

  INSERT INTO chiso_dtot
  SELECT t.unit_code, CASE WHEN grouping(t.sector) = 1 THEN '*' ELSE t.sector END,
    @TOT_PLAIN_SUMS(t)@
  FROM (SELECT s.unit_code, s.sector,
          @TOTAL_FILTERS(s)@
        FROM chiso_st s GROUP BY 1, 2) t
  GROUP BY GROUPING SETS ((t.unit_code, t.sector), (t.unit_code))
  HAVING @TOT_NONZERO(t)@;

  INSERT INTO chiso_dhist
  SELECT h.unit_code, CASE WHEN grouping(h.sector) = 1 THEN '*' ELSE h.sector END, h.day, h.bucket, sum(h.n)
  FROM (SELECT s.unit_code, s.sector, (s.end_at AT TIME ZONE p_tz)::date AS day,
          @BUCKET@(@ELAPSED_MS(s)@) AS bucket, s.sign AS n
        FROM chiso_st s WHERE @HIST_WHERE(s)@) h
  GROUP BY GROUPING SETS ((h.unit_code, h.sector, h.day, h.bucket), (h.unit_code, h.day, h.bucket))
  HAVING sum(h.n) <> 0;

  INSERT INTO chiso_ddue
  SELECT d.unit_code, CASE WHEN grouping(d.sector) = 1 THEN '*' ELSE d.sector END, d.recv_day, d.due_day, sum(d.n)
  FROM (SELECT s.unit_code, s.sector, (s.recv_at AT TIME ZONE p_tz)::date AS recv_day,
          (s.eff_due_at AT TIME ZONE p_tz)::date AS due_day, s.sign AS n
        FROM chiso_st s
        WHERE @COHORT_DUE_WHERE(s)@) d
  GROUP BY GROUPING SETS ((d.unit_code, d.sector, d.recv_day, d.due_day), (d.unit_code, d.recv_day, d.due_day))
  HAVING sum(d.n) <> 0;

  -- open dossiers with a deadline, by UTC hour of the deadline (rollup rows only: rollup_open_due)
  INSERT INTO chiso_dopen
  SELECT o.unit_code, CASE WHEN grouping(o.sector) = 1 THEN '*' ELSE o.sector END, o.hour, sum(o.n)
  FROM (SELECT s.unit_code, s.sector, date_trunc('hour', s.eff_due_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour, s.sign AS n
        FROM chiso_st s WHERE @OPEN_DUE_WHERE(s)@) o
  GROUP BY GROUPING SETS ((o.unit_code, o.sector, o.hour), (o.unit_code, o.hour))
  HAVING sum(o.n) <> 0;

  -- 5. own rows, then the rollup rows of every province and nation at or above each unit
  -- day rows, each with the histogram of its day's resolutions packed in it (app.db.types.hist_pack;
  -- null on a day nothing resolved): a day with either kind of change is one upsert; a zero counter
  -- is stored as NULL (app.db.models.aggregates.day_count_column)
  INSERT INTO unit_day AS u (unit_code, sector, day, source, @DAY_COLS@, hist)
  SELECT unit_code, sector, day, '', @DAY_STORED(d)@, h.hist
  FROM chiso_dday d
  FULL JOIN (SELECT h.unit_code, h.sector, h.day, @HIST_PACK@(array_agg(h.bucket), array_agg(h.n)) AS hist
             FROM chiso_dhist h GROUP BY 1, 2, 3) h USING (unit_code, sector, day)
  ORDER BY 1, 2, 3
  ON CONFLICT (unit_code, sector, day, source) DO UPDATE SET @DAY_SPARSE_ADD(u)@, hist = @HIST_ADD@(u.hist, excluded.hist);

  INSERT INTO unit_cohort_due AS u (unit_code, sector, recv_day, due_day, source, n)
  SELECT c.unit_code, c.sector, c.recv_day, c.due_day, '', c.n FROM chiso_ddue c ORDER BY 1, 2, 3, 4
  ON CONFLICT (unit_code, sector, recv_day, due_day, source) DO UPDATE SET n = u.n + excluded.n;

  INSERT INTO unit_total AS u (unit_code, sector, source, @TOT_COLS@)
  SELECT t.unit_code, t.sector, '', @TOT_VALUES(t)@
  FROM chiso_dtot t ORDER BY 1, 2
  ON CONFLICT (unit_code, sector, source) DO UPDATE SET @TOT_ADD(u)@;

  INSERT INTO chiso_rollup SELECT r.u, r.a FROM json_to_recordset(p_rollup) AS r(u varchar, a varchar);

  INSERT INTO rollup_day AS u (unit_code, sector, day, slot, @DAY_COLS@, hist)
  SELECT unit_code, sector, day, p_slot, @DAY_STORED(d)@, h.hist
  FROM (SELECT r.above AS unit_code, d.sector, d.day, @DAY_NAMED_SUMS(d)@
        FROM chiso_dday d JOIN chiso_rollup r ON r.unit_code = d.unit_code
        GROUP BY r.above, d.sector, d.day
        HAVING @DAY_NONZERO(d)@) d
  FULL JOIN (SELECT x.above AS unit_code, x.sector, x.day, @HIST_PACK@(array_agg(x.bucket), array_agg(x.n)) AS hist
             FROM (SELECT r.above, h.sector, h.day, h.bucket, sum(h.n)::bigint AS n
                   FROM chiso_dhist h JOIN chiso_rollup r ON r.unit_code = h.unit_code
                   GROUP BY 1, 2, 3, 4 HAVING sum(h.n) <> 0) x
             GROUP BY 1, 2, 3) h USING (unit_code, sector, day)
  ORDER BY 1, 2, 3
  ON CONFLICT (unit_code, sector, day, slot) DO UPDATE SET @DAY_SPARSE_ADD(u)@, hist = @HIST_ADD@(u.hist, excluded.hist);

  INSERT INTO rollup_cohort_due AS u (unit_code, sector, recv_day, due_day, slot, n)
  SELECT r.above, c.sector, c.recv_day, c.due_day, p_slot, sum(c.n)
  FROM chiso_ddue c JOIN chiso_rollup r ON r.unit_code = c.unit_code
  GROUP BY 1, 2, 3, 4 HAVING sum(c.n) <> 0 ORDER BY 1, 2, 3, 4
  ON CONFLICT (unit_code, sector, recv_day, due_day, slot) DO UPDATE SET n = u.n + excluded.n;

  INSERT INTO rollup_total AS u (unit_code, sector, slot, @TOT_COLS@)
  SELECT r.above, t.sector, p_slot, @TOT_SUMS(t)@
  FROM chiso_dtot t JOIN chiso_rollup r ON r.unit_code = t.unit_code
  GROUP BY 1, 2
  HAVING @TOT_NONZERO(t)@
  ORDER BY 1, 2
  ON CONFLICT (unit_code, sector, slot) DO UPDATE SET @TOT_ADD(u)@;

  INSERT INTO rollup_open_due AS u (unit_code, sector, hour, slot, n)
  SELECT r.above, o.sector, o.hour, p_slot, sum(o.n)
  FROM chiso_dopen o JOIN chiso_rollup r ON r.unit_code = o.unit_code
  GROUP BY 1, 2, 3 HAVING sum(o.n) <> 0 ORDER BY 1, 2, 3
  ON CONFLICT (unit_code, sector, hour, slot) DO UPDATE SET n = u.n + excluded.n;

  -- 6. one more change per unit whose stored rows changed (app.aggregates.writes.add_aggregates,
  -- `touched`): every unit with a dossier in chiso_st. Each new event changes its dossier's row (its
  -- events per day) and its unit's last acceptance (silent sources); the units with changed own rows,
  -- open-deadline rows (chiso_dopen), deadlines moved within an hour or instants within a day (what
  -- the figures at now and at t read, no day row holds) are among them, duplicates touch none.
  -- Export marks from the earliest changed day.
  INSERT INTO unit_change AS u (unit_code, changes, changed_at)
  SELECT DISTINCT s.unit_code, 1, p_now FROM chiso_st s
  ORDER BY 1
  ON CONFLICT (unit_code) DO UPDATE SET changes = u.changes + 1, changed_at = excluded.changed_at;

  -- a deadline moved (receipt known) changes today's figures at now and the receipt's periods
  INSERT INTO export_dirty AS u (unit_code, day, gen)
  SELECT x.unit_code, min(x.day), 1 FROM (
    -- the due-soon counters of deadline day D are end-of-day figures of days D - 3 to D - 1
    SELECT d.unit_code, @MARK_DAY(d)@ FROM chiso_dday d
    UNION ALL SELECT h.unit_code, h.day FROM chiso_dhist h
    UNION ALL SELECT c.unit_code, c.recv_day FROM chiso_ddue c
    UNION ALL SELECT n.unit_code, (n.recv_at AT TIME ZONE p_tz)::date
      FROM chiso_st n JOIN chiso_st o ON o.unit_code = n.unit_code AND o.dossier_id = n.dossier_id AND o.sign = -1
      WHERE n.sign = 1 AND n.recv_at IS NOT NULL AND n.eff_due_at IS DISTINCT FROM o.eff_due_at) x
  GROUP BY 1 ORDER BY 1
  ON CONFLICT (unit_code) DO UPDATE SET day = least(u.day, excluded.day), gen = u.gen + 1;

  PERFORM set_config('enable_nestloop', 'on', true);

  -- silent sources (app.aggregates.silent.record_accepted): the last acceptance per unit, and
  -- the local days its accepted events are dated on
@RECORD_ACCEPTED@

  -- 7. last, so that the hot row is held only for the commit: one slot of the data version
  INSERT INTO node_meta AS m (name, value) VALUES ('@DATA_VERSION@.' || floor(random() * @VERSION_SLOTS@)::int, 1)
  ON CONFLICT (name) DO UPDATE SET value = m.value + 1;

  RETURN QUERY SELECT n.unit_code, n.event_id FROM chiso_new n;
END
$fn$
