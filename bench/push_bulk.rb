# Sidekiq's own bulk enqueue, the best a Rails app can do without a bridge: pushes JOBS
# copies of one job (class, args, extra keys) with Sidekiq::Client.push_bulk, BATCH per
# call, into the Redis at URL.
#   ruby bench/push_bulk.rb URL JOBS BATCH CLASS ARGS_JSON EXTRA_JSON
require "json"
require "sidekiq"

Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)  # one line per call otherwise
url, jobs, batch, klass, args_json, extra_json = ARGV
Sidekiq.configure_client { |config| config.redis = { url: url } }
args = JSON.parse(args_json)
extra = extra_json.to_s.empty? ? {} : JSON.parse(extra_json)
left = Integer(jobs)
while left > 0
  n = [left, Integer(batch)].min
  Sidekiq::Client.push_bulk(extra.merge("class" => klass, "queue" => "default", "args" => Array.new(n) { args }))
  left -= n
end
