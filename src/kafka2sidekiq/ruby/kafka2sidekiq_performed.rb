# frozen_string_literal: true

# kafka2sidekiq, K2S_COMMIT_ON=performed: tells the bridge when Sidekiq has finished each
# bridged job, so that the offset it commits to Kafka is the lowest one not yet finished
# and a host that dies loses no job that was waiting in its Redis.
#
# It is installed with the Python package; `kafka2sidekiq middleware` prints its path.
# Load it in the Sidekiq server process, once: require that path, or in Rails copy this
# file into config/initializers/ (cp "$(kafka2sidekiq middleware)" config/initializers/).
# Works with Sidekiq 6.4 and later; it needs nothing but Sidekiq itself.
#
# Per bridged job (one that carries "k2s_origin": "<topic>/<partition>/<offset>") it makes
# one small Redis write when the job is finished: RPUSH of the offset to
# k2s:performed:<topic>:<partition>, through Sidekiq's own connection (and namespace).
# Finished means: perform returned, or it raised and Sidekiq's retry handling has the job
# now (the retry set, later the dead set). A job interrupted by a Sidekiq shutdown goes back
# to its queue and is not finished. Jobs without "k2s_origin" are left alone.

require "sidekiq"

module Kafka2Sidekiq
  class Performed
    def call(_worker, job, _queue)
      result = yield
      acknowledge(job)
      result
    rescue Sidekiq::Shutdown
      raise
    rescue Exception # rubocop:disable Lint/RescueException - re-raised: Sidekiq's retry decides
      acknowledge(job)
      raise
    end

    private

    def acknowledge(job)
      origin = job["k2s_origin"]
      return unless origin.is_a?(String)

      head, _, offset = origin.rpartition("/")
      topic, _, partition = head.rpartition("/")
      Sidekiq.redis { |redis| redis.rpush("k2s:performed:#{topic}:#{partition}", offset) }
    rescue StandardError => e
      # Never fail a job that has run: without this acknowledgement the bridge counts the job
      # finished anyway once K2S_PERFORMED_HOLD_SECONDS have passed.
      Sidekiq.logger.warn("kafka2sidekiq: could not acknowledge #{origin}: #{e.class}: #{e.message}")
    end
  end
end

Sidekiq.configure_server do |config|
  config.server_middleware { |chain| chain.add Kafka2Sidekiq::Performed }
end
