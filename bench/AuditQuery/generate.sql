-- 1,000,000 events in tenant 'big' (50 busy users, 8 tools, tool_call.* types) with 100 events each of a rare user,
-- a rare tool and a rare type spread through the chain, plus 10 tenants of 10,000. Hashes are placeholders: this
-- measures queries and inserts, not the chain.
INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash)
SELECT 'big', s, now() - make_interval(secs => 1000000 - s),
       CASE WHEN s % 10000 = 17 THEN 'rare-user' ELSE 'user-' || (s % 50) END, 'someone', NULL,
       CASE WHEN s % 10000 = 4242 THEN 'policy.changed' ELSE (ARRAY['tool_call.requested','tool_call.decided','tool_call.executed'])[1 + s % 3] END,
       CASE WHEN s % 10000 = 777 THEN 'rare.tool' ELSE (ARRAY['fs.read','fs.write','fs.list','fs.search','shell.exec','http.fetch','memory.save','memory.search'])[1 + s % 8] END,
       NULL, '{"callId":"x"}'::json, repeat('0', 64), repeat('0', 64), repeat('0', 64)
FROM generate_series(1, 1000000) s;
INSERT INTO audit_events (tenant_id, seq, at, actor_id, actor_name, session_id, type, tool, decision, payload, payload_hash, prev_hash, hash)
SELECT 'small-' || t, s, now(), 'user-' || (s % 5), 'someone', NULL, 'tool_call.decided', 'fs.read', NULL, NULL, repeat('0', 64), repeat('0', 64), repeat('0', 64)
FROM generate_series(1, 10) t, generate_series(1, 10000) s;
ANALYZE audit_events;
