# frozen_string_literal: true

# The middleware's own tests: ruby ruby/test/test_performed.rb, with REDIS_URL pointing at
# a Redis database it may write to (tests/system/test_performed_middleware.py runs them).

require "minitest/autorun"
require "sidekiq"
require "sidekiq/cli" # Sidekiq.server? is true: the configure_server block below runs
require_relative "../../src/kafka2sidekiq/ruby/kafka2sidekiq_performed"

class PerformedTest < Minitest::Test
  KEY = "k2s:performed:orders.v1:3"

  def setup
    @redis = Redis.new(url: ENV.fetch("REDIS_URL"))
    @redis.del(KEY)
    @middleware = Kafka2Sidekiq::Performed.new
  end

  def teardown
    @redis.del(KEY)
    @redis.close
  end

  def bridged(offset)
    {"class" => "OrderJob", "args" => [], "jid" => "abc", "k2s_origin" => "orders.v1/3/#{offset}"}
  end

  def acknowledged
    @redis.lrange(KEY, 0, -1)
  end

  def test_it_is_a_server_middleware_once_required
    assert Sidekiq.server_middleware.exists?(Kafka2Sidekiq::Performed)
  end

  def test_a_job_that_returned_is_finished
    assert_equal :done, @middleware.call(nil, bridged(41), "default") { :done }
    assert_equal ["41"], acknowledged
  end

  def test_a_job_that_raised_is_finished_and_the_error_goes_on_to_sidekiqs_retry
    error = assert_raises(RuntimeError) { @middleware.call(nil, bridged(42), "default") { raise "boom" } }
    assert_equal "boom", error.message
    assert_equal ["42"], acknowledged
  end

  def test_a_job_interrupted_by_a_shutdown_goes_back_to_its_queue_unfinished
    assert_raises(Sidekiq::Shutdown) { @middleware.call(nil, bridged(43), "default") { raise Sidekiq::Shutdown } }
    assert_empty acknowledged
  end

  def test_jobs_not_from_the_bridge_are_left_alone
    before = @redis.keys("k2s:*")
    assert_equal :done, @middleware.call(nil, {"class" => "OrderJob", "args" => [1]}, "default") { :done }
    assert_equal before, @redis.keys("k2s:*")
  end

  def test_a_topic_name_with_dots_and_dashes_keeps_its_partition_and_offset
    @middleware.call(nil, bridged(7).merge("k2s_origin" => "a.b-c_d/11/123456789012"), "default") { :done }
    assert_equal ["123456789012"], @redis.lrange("k2s:performed:a.b-c_d:11", 0, -1)
  ensure
    @redis.del("k2s:performed:a.b-c_d:11")
  end

  def test_a_failed_acknowledgement_never_fails_the_job
    original = Sidekiq.redis_pool
    Sidekiq.redis = {url: "redis://127.0.0.1:1/0", network_timeout: 1}
    assert_equal :done, @middleware.call(nil, bridged(44), "default") { :done }
  ensure
    Sidekiq.redis = original
  end
end
