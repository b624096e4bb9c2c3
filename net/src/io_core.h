#pragma once

// The shared engine of a TcpTransport: one io_context run by N threads, and
// the shutdown gate. Every post from outside the io threads goes through
// Post(), which refuses once shutdown has begun; Shutdown() then asks every
// tracked object to close and lets the io_context run out of work before
// joining, so no handler is ever destroyed unrun inside ~io_context.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

namespace tally::net::internal {

namespace asio = boost::asio;

// Something that owns sockets or timers on the io_context and must be
// closed before the transport's threads can drain.
class Closable {
 public:
  virtual ~Closable() = default;
  // Called once from Shutdown, on the shutting-down thread: post (with
  // asio::post, not IoCore::Post) a close onto the object's own strand.
  virtual void CloseForShutdown() = 0;
};

class IoCore {
 public:
  // Starts `threads` (>= 1) threads running the io_context.
  explicit IoCore(int threads);
  // Requires Shutdown() to have completed.
  ~IoCore();

  IoCore(const IoCore&) = delete;
  IoCore& operator=(const IoCore&) = delete;

  asio::io_context& io() { return io_; }

  // Posts `f` to `ex` unless shutdown has begun; then returns false and
  // leaves `f` unmoved so the caller can still complete it. Thread-safe.
  template <typename Executor, typename F>
  bool Post(const Executor& ex, F&& f) {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return false;
    asio::post(ex, std::forward<F>(f));
    return true;
  }

  // Registers an object to close at shutdown. Returns false (and does not
  // register) if shutdown has begun. Thread-safe.
  bool Track(std::weak_ptr<Closable> object);

  // True when called from one of this core's io threads.
  bool InIoThread();

  // Closes tracked objects, lets the io_context drain and joins the
  // threads. Idempotent. Must not be called from an io thread (it would
  // join itself); there it only logs and returns.
  void Shutdown();

 private:
  void RunThread();

  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard_;
  std::vector<std::thread> threads_;
  std::mutex mu_;
  bool stopping_ = false;                         // GUARDED_BY(mu_)
  std::vector<std::weak_ptr<Closable>> tracked_;  // GUARDED_BY(mu_)
  std::mutex shutdown_mu_;                        // serializes Shutdown callers
  bool joined_ = false;                           // GUARDED_BY(shutdown_mu_)
};

}  // namespace tally::net::internal
