# The demo's Sidekiq app (`scripts/run --demo`): it performs the HardJob jobs that the
# README's "Try it" sends through Kafka, and logs each one, so a job's way from Kafka
# through kafka2sidekiq and Redis to Ruby shows in one terminal.
require "json"
require "sidekiq"

# Debian's Sidekiq 6.4 calls its newer redis gem the old way, which warns at every fetch
Redis.silence_deprecations = true if Redis.respond_to?(:silence_deprecations=)

class HardJob
  include Sidekiq::Job

  def perform(*args)
    logger.info "HardJob performed: args=#{JSON.generate(args)}"
  end
end
