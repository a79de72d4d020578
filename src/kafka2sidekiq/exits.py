"""Exit codes, in one place. The bridge's own (``kafka2sidekiq run`` and the other
commands) are in the README; UNAVAILABLE only passes from a child to the supervisor."""

OK = 0           # done
FAILED = 1       # failed: a graceful stop past its deadline, K2S_HTTP cannot bind, a command failed
USAGE = 2        # the command line is wrong
BOOT = 3         # a process could not boot: refused credentials, no such topic (the cause is logged)
CRASHLOOP = 4    # a process kept dying before it booted
UNAVAILABLE = 75  # EX_TEMPFAIL: Kafka or Redis unreachable at boot; a child is started again, no end
CONFIG = 78      # EX_CONFIG: a setting is wrong (named on stderr)
