-- Statements of the delivery transports' shared state.

-- name: reserve_send_slots
-- Reserve the next n send slots of a provider at `rate` messages per second, for every worker of
-- this instance at once: the window starts at the first free slot (now at the earliest) and lasts
-- n / rate seconds. Returns how many seconds from now the window starts (<= 0: start now).
INSERT INTO mc.provider_rate AS r (provider, next_free)
VALUES (%(provider)s, clock_timestamp() + make_interval(secs => %(n)s::float8 / %(rate)s::float8))
ON CONFLICT (provider) DO UPDATE
SET next_free = greatest(r.next_free, clock_timestamp())
                + make_interval(secs => %(n)s::float8 / %(rate)s::float8)
RETURNING extract(epoch FROM r.next_free - clock_timestamp())::float8
          - %(n)s::float8 / %(rate)s::float8;
