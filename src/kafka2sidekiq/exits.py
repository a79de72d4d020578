"""Exit codes, in one place, all in the README. UNAVAILABLE also passes from a child to
the supervisor (which then starts it again)."""

OK = 0           # done
FAILED = 1       # failed: a graceful stop past its deadline, K2S_HTTP cannot bind, a command failed
USAGE = 2        # the command line is wrong
BOOT = 3         # a process could not boot: refused credentials, no such topic (the cause is logged)
CRASHLOOP = 4    # a process kept dying before it booted
INVALID_JOB = 65  # EX_DATAERR: push/produce: the bridge would refuse the job (the line says why)
UNAVAILABLE = 75  # EX_TEMPFAIL: Kafka or Redis unreachable (a command; a child at boot: started again)
REFUSED = 77     # EX_NOPERM: Kafka or Redis refused the credentials or the permission
CONFIG = 78      # EX_CONFIG: a setting is wrong (named on stderr)
INTERRUPTED = 130  # a command stopped by Ctrl-C (128 + SIGINT)
