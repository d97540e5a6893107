-- wrk reporter: one JSON line with the figures the benchmark keeps.
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.status + summary.errors.timeout
  io.write(string.format(
    'JSON{"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"errors":%d,"timeouts":%d,"non_2xx":%d}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    errors, summary.errors.timeout, summary.errors.status))
end
