-- Data contracts and the quarantine: bad rows are diverted with every rule
-- they broke, never lost, and can be replayed.
CREATE EXTENSION pipeline;
\set VERBOSITY terse

CREATE TABLE raw_orders (seq bigserial PRIMARY KEY, order_id text, customer_id int,
                         total text, status text, email text);
CREATE TABLE customers (customer_id int PRIMARY KEY);
INSERT INTO customers VALUES (1), (2), (3);
CREATE TABLE orders (order_id bigint NOT NULL, customer_id int, total numeric(10,2),
                     status text, email text,
                     CONSTRAINT total_below_10000 CHECK (total < 10000));
SELECT pipeline_create('orders', 'raw_orders', 'orders', watermark => 'seq',
  transform => 'SELECT order_id, customer_id, total, status, email FROM batch');

-- the article's OrderContract, as rules
SELECT pipeline_contract('orders', $${
  "columns": {
    "order_id":    {"not_null": true, "unique": true},
    "customer_id": {"references": "public.customers(customer_id)"},
    "total":       {"min": 0, "max": 5000},
    "status":      {"in": ["pending", "completed", "cancelled"]},
    "email":       {"matches": "^[^@]+@[^@]+$", "max_length": 20}
  },
  "checks": {"completed_has_total": "status <> 'completed' OR total > 0"},
  "actions": {"email.max_length": "warn"}
}$$);
SELECT rule, kind, column_name, argument, action FROM pipeline.contract_rules ORDER BY rule;

INSERT INTO raw_orders (order_id, customer_id, total, status, email) VALUES
  ('1',  1, '10.50',  'pending',   'a@x.io'),            -- clean
  ('2',  2, '-1',     'pending',   'b@x.io'),            -- total.min
  ('3',  9, '20',     'shipped',   'c@x.io'),            -- customer_id.references, status.in
  (NULL, 1, '5',      'pending',   'd@x.io'),            -- order_id.not_null
  ('5',  1, 'abc',    'pending',   'e@x.io'),            -- total.type (implicit)
  ('6',  1, '7000',   'pending',   'f@x.io'),            -- total.max
  ('7',  1, '123456789', 'pending', 'g@x.io'),           -- total.type: numeric(10,2) overflows
  ('8',  1, '8',      'completed', 'not-an-email'),      -- email.matches
  ('9',  1, '0',      'completed', 'h@x.io'),            -- completed_has_total
  ('10', 1, '1',      'pending',   'a-very-long-address@example.org'), -- warn only
  ('11', NULL, NULL,  NULL,        NULL),                -- NULL passes all but not_null
  ('12', 1, '3',      'pending',   'i@x.io'),            -- order_id.unique (twice)
  ('12', 2, '4',      'pending',   'j@x.io');
SELECT status, rows_read, rows_loaded, rows_quarantined, rule_failures FROM pipeline_run('orders');
SELECT order_id, total, status FROM orders ORDER BY order_id;
SELECT data ->> 'order_id' AS order_id, violations FROM pipeline.quarantine ORDER BY id;
-- every source row is loaded or quarantined
SELECT rows_read = rows_loaded + rows_quarantined AS accounted FROM pipeline.runs WHERE pipeline = 'orders';

-- unique also holds against rows already in the target (append mode)
INSERT INTO raw_orders (order_id, customer_id, total, status) VALUES ('1', 1, '1', 'pending');
SELECT rows_loaded, rows_quarantined, rule_failures FROM pipeline_run('orders');

-- a 'fail' rule fails the run on its first break: nothing loaded or quarantined
SELECT pipeline_contract('orders', $${"columns": {"total": {"min": 0}},
                                      "actions": {"total.min": "fail"}}$$);
INSERT INTO raw_orders (order_id, customer_id, total, status) VALUES ('20', 1, '5', 'pending'), ('21', 1, '-5', 'pending');
SELECT status, sqlstate, error FROM pipeline_run('orders');
SELECT count(*) AS quarantined_by_failed_run FROM pipeline.quarantine q JOIN pipeline.runs r USING (run_id) WHERE r.status = 'failed';

-- thresholds: over max_bad_fraction the run fails and names the worst rules
SELECT pipeline_contract('orders', $${"columns": {"total": {"min": 0}}, "max_bad_fraction": 0.3}$$);
SELECT status, rows_loaded, rows_quarantined, error FROM pipeline_run('orders');
SELECT pipeline_contract('orders', $${"columns": {"total": {"min": 0}}, "max_bad_rows": 1}$$);
SELECT status, rows_loaded, rows_quarantined FROM pipeline_run('orders');
SELECT order_id FROM orders WHERE order_id IN (20, 21);

-- replay: relax the contract, replay the quarantine; a second replay loads nothing twice
SELECT count(*) AS waiting FROM pipeline.quarantine WHERE replayed_at IS NULL;
SELECT pipeline_contract('orders', $${"columns": {"total": {"max": 100000}}}$$);
SELECT * FROM pipeline_replay('orders');
SELECT * FROM pipeline_replay('orders');
SELECT data ->> 'order_id' AS order_id, violations FROM pipeline.quarantine WHERE replayed_at IS NULL ORDER BY id;
-- remove a row's cause (a column too narrow) and replay just that row
SELECT id AS bad_total_id FROM pipeline.quarantine WHERE replayed_at IS NULL AND data ->> 'order_id' = '7' \gset
ALTER TABLE orders ALTER COLUMN total TYPE numeric(12,2), DROP CONSTRAINT total_below_10000;
SELECT pipeline_contract('orders', NULL);
SELECT * FROM pipeline_replay('orders', ARRAY[:bad_total_id]::bigint[]);
SELECT total FROM orders WHERE order_id = 7;
SELECT count(*) AS still_waiting FROM pipeline.quarantine WHERE replayed_at IS NULL;

-- a replay into a replace-mode target adds the recovered rows; it never
-- swaps the target's contents for them
CREATE TABLE snap_src (k int, n int);
CREATE TABLE snap (k int, n int CHECK (n < 100));
INSERT INTO snap_src VALUES (1, 10), (2, 20), (3, 500);
SELECT pipeline_create('snap', 'snap_src', 'snap', mode => 'replace');
SELECT rows_loaded, rows_quarantined FROM pipeline_run('snap');
ALTER TABLE snap DROP CONSTRAINT snap_n_check;
SELECT * FROM pipeline_replay('snap');
SELECT * FROM snap ORDER BY k;

-- pipeline_check: the same rules as data tests over an existing table
SELECT rule, failing_rows, samples FROM pipeline_check('orders', $${
  "columns": {"total": {"min": 0, "max": 100}, "status": {"in": ["pending", "completed"]},
              "order_id": {"unique": true, "not_null": true}},
  "checks": {"small_ids": "order_id < 1000"}}$$) ORDER BY rule;

-- bad contracts are refused and change nothing
SELECT pipeline_contract('orders', '{"columns": {"total": {"between": [1, 2]}}}');
SELECT pipeline_contract('orders', '{"columns": {"nope": {"not_null": true}}}');
SELECT pipeline_contract('orders', '{"columns": {"email": {"matches": "("}}}');
SELECT pipeline_contract('orders', '{"checks": {"bad": "nope > 1"}}');
SELECT pipeline_contract('orders', '{"columns": {"total": {"min": "x"}}}');
SELECT pipeline_contract('orders', '{"actions": {"total.min": "fail"}}');
SELECT pipeline_contract('orders', '{"columns": {"total": {"min": 0}}, "actions": {"total.min": "explode"}}');
SELECT pipeline_contract('orders', '{"max_bad_fraction": 2}');
SELECT pipeline_contract('orders', '{"colums": {}}');
SELECT pipeline_contract('orders', '{"columns": {"customer_id": {"references": "nope(x)"}}}');
SELECT pipeline_contract('nope', '{}');
SELECT rule FROM pipeline.contract_rules;

-- routing functions are only for runs
SELECT pipeline_divert('{x}', '{}');

DROP EXTENSION pipeline;
DROP TABLE raw_orders, customers, orders, snap_src, snap;
