#!/bin/bash
# Usage: bench/metrics_sample.sh [OUTDIR]
# A sample of /metrics and of the slow-query report (GET /platform/slow-queries) after
# seed-demo plus some traffic, with the app started as the Procfile starts it, on a
# throw-away database (PGHOST/PGUSER: a local server with trust auth; SLOW_QUERY_MS=100
# so the seed's bulk statements show in the slow log).
set -e
cd "$(dirname "$0")/.."
OUT="${1:-/tmp/lms_metrics_sample}"; mkdir -p "$OUT"
DB=lms_sample_metrics
psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $DB" -c "CREATE DATABASE $DB" >/dev/null
export DATABASE_URL="postgresql://root@127.0.0.1:5432/$DB" REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/3}"
export SECRET_KEY=sample-secret-key-0123456789abcdef0123 PLATFORM_API_KEY=sample-platform-key-0123456789abcdef LMS_ENV=production PORT=8911
export SLOW_QUERY_MS=100
.venv/bin/flask --app wsgi db-upgrade >/dev/null 2>&1
.venv/bin/flask --app wsgi seed-demo > ${OUT}/seed.txt 2>&1
.venv/bin/gunicorn -c config/gunicorn.conf.py wsgi:app > ${OUT}/server.log 2>&1 &
PID=$!
for i in $(seq 50); do curl -sf localhost:8911/healthz >/dev/null && break; sleep 0.3; done
TOKEN=$(curl -s -H 'X-Tenant: demo' -H 'Content-Type: application/json' -d '{"email":"admin@demo.school","password":"demo-admin-pass"}' localhost:8911/api/v1/auth/token | jq -r .access_token)
H=(-H 'X-Tenant: demo' -H "Authorization: Bearer $TOKEN")
for i in $(seq 30); do
  curl -s "${H[@]}" localhost:8911/api/v1/courses >/dev/null
  curl -s "${H[@]}" "localhost:8911/api/v1/courses/$(( (i % 5) + 1 ))" >/dev/null
  curl -s "${H[@]}" "localhost:8911/api/v1/search?q=data" >/dev/null
  curl -s "${H[@]}" localhost:8911/api/v1/me >/dev/null
done
curl -s "${H[@]}" "localhost:8911/api/v1/analytics/courses/1" >/dev/null || true
sleep 1.5
curl -s localhost:8911/metrics > ${OUT}/metrics.txt
curl -s -H "Authorization: Bearer $PLATFORM_API_KEY" localhost:8911/platform/slow-queries > ${OUT}/slow.json
kill $PID; wait $PID 2>/dev/null || true
echo "wrote $OUT/metrics.txt and $OUT/slow.json"
