-- wrk script of bench/callback_bridge.py: posts one phase's callbacks, each exactly once.
--
--   BENCH_CALLBACK_BODIES   a file of the phase's bodies, one JSON document a line; line n is callback n
--   BENCH_CALLBACK_RECORDS  where done() writes a line per callback posted:
--                           "n status first-try answered" (status 0: given up; times CLOCK_MONOTONIC s)
--   BENCH_CALLBACK_ANSWERED a file made once every callback is answered (or given up): the benchmark
--                           then ends wrk with SIGINT (its handler: stop, join the threads, call done())
--                           instead of waiting out -d
--   BENCH_CALLBACK_RATE     callbacks per second, callback n due (n - 1) / rate s after the first;
--                           unset: closed loop, each connection posts its next callback once answered
--
-- Run with as many threads as connections (wrk -t N -c N): a thread's one connection has at most one
-- callback in flight, so each answer is that callback's. The threads take the callbacks from one
-- counter (the faster connections post more, as the Python posters' shared queue does) and stop once
-- nothing is left to take.

local ffi = require("ffi")

ffi.cdef [[
typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
int clock_gettime(int clock, bench_timespec *now);
typedef unsigned long pthread_t;
pthread_t pthread_self(void);
int pthread_equal(pthread_t a, pthread_t b);
typedef union { char bytes[64]; long align; } bench_mutex;  /* room for glibc's pthread_mutex_t */
int pthread_mutex_init(bench_mutex *mutex, const void *attributes);
int pthread_mutex_lock(bench_mutex *mutex);
int pthread_mutex_unlock(bench_mutex *mutex);
void *calloc(size_t count, size_t size);
typedef struct {
    bench_mutex lock;
    pthread_t main;  /* wrk's main thread */
    int taken;       /* callbacks handed to a connection */
    int settled;     /* callbacks answered, or given up */
    double start;    /* when callback 1 was taken: time zero of the paced phase */
} bench_shared;
]]

local CLOCK_MONOTONIC = 1  -- the clock of Python's time.monotonic()
local TRIES = 2            -- a callback whose connection fails twice is given up, as bench/common.Connection does
local STOPPED_DELAY_MS = 60000

local C = ffi.C
local timespec = ffi.new("bench_timespec")

local function now()
    C.clock_gettime(CLOCK_MONOTONIC, timespec)
    return tonumber(timespec.tv_sec) + tonumber(timespec.tv_nsec) * 1e-9
end

-- wrk's main Lua state: one memory block all threads share, and the records of all threads at the end.

local threads = {}

function setup(thread)
    if shared == nil then
        shared = ffi.cast("bench_shared *", C.calloc(1, ffi.sizeof("bench_shared")))
        C.pthread_mutex_init(shared.lock, nil)
        shared.main = C.pthread_self()
    end
    thread:set("shared_address", tonumber(ffi.cast("uintptr_t", shared)))
    threads[#threads + 1] = thread
end

function done()
    local out = assert(io.open(os.getenv("BENCH_CALLBACK_RECORDS"), "w"))
    for _, thread in ipairs(threads) do
        for _, line in ipairs(thread:get("records")) do
            out:write(line, "\n")
        end
    end
    out:close()
end

-- Each thread's Lua state: its connection's callback.

records = {}   -- fetched by done()
local rate = tonumber(os.getenv("BENCH_CALLBACK_RATE") or "")
local bodies
local job, tries, first_try  -- the callback on this connection: its number, its tries so far, when first sent

function init(args)
    shared = ffi.cast("bench_shared *", shared_address)
    bodies = {}
    for line in io.lines(os.getenv("BENCH_CALLBACK_BODIES")) do
        bodies[#bodies + 1] = line
    end
end

local function take()
    C.pthread_mutex_lock(shared.lock)
    local number
    if shared.taken < #bodies then
        shared.taken = shared.taken + 1
        number = shared.taken
        if number == 1 then
            shared.start = now()
        end
    end
    local start = shared.start
    C.pthread_mutex_unlock(shared.lock)
    return number, start
end

local function settle(status)
    records[#records + 1] = string.format("%d %d %.6f %.6f", job, status, first_try, now())
    job = nil
    C.pthread_mutex_lock(shared.lock)
    shared.settled = shared.settled + 1
    local all = shared.settled == #bodies
    C.pthread_mutex_unlock(shared.lock)
    if all then
        assert(io.open(os.getenv("BENCH_CALLBACK_ANSWERED"), "w")):close()
    end
end

-- The head http.client writes for the Python posters; the body's length follows.
local HEAD = string.format(
    "POST %s HTTP/1.1\r\nHost: %s:%s\r\nAccept-Encoding: identity\r\nContent-Type: application/json\r\nContent-Length: ",
    wrk.path, wrk.host, wrk.port)

local function post(number)
    local body = bodies[number]
    return HEAD .. #body .. "\r\n\r\n" .. body
end

-- Called for each request wrk sends: a new callback's, or once more the same one's when its connection
-- failed before the answer (wrk reconnects and asks again). Nothing left to take: this thread stops,
-- and the empty request makes wrk write nothing.
function request()
    if first_try == nil and C.pthread_equal(C.pthread_self(), shared.main) ~= 0 then
        return post(1)  -- wrk's check of the script's request, before the threads start: not sent
    end
    if job ~= nil and tries == TRIES then
        settle(0)
    end
    if job == nil then
        job = take()
        if job == nil then
            wrk.thread:stop()
            return ""
        end
        tries = 0
    end
    tries = tries + 1
    if tries == 1 then
        first_try = now()
    end
    return post(job)
end

function response(status, headers, body)
    settle(status)
end

-- Paced: wrk calls delay() before each new request, for the ms to wait first. It takes the callback
-- then, so that the wait is for that callback's time.
if rate ~= nil then
    function delay()
        local start
        job, start = take()
        if job == nil then
            wrk.thread:stop()
            return STOPPED_DELAY_MS  -- never waited for: the thread's loop ends first
        end
        tries = 0
        return math.max(0, math.ceil((start + (job - 1) / rate - now()) * 1000))
    end
end
