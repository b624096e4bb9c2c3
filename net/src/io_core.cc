#include "io_core.h"

#include <spdlog/spdlog.h>

#include <cassert>
#include <exception>

namespace tally::net::internal {

IoCore::IoCore(int threads) : guard_(asio::make_work_guard(io_)) {
  if (threads < 1) threads = 1;
  threads_.reserve(static_cast<size_t>(threads));
  for (int i = 0; i < threads; ++i) threads_.emplace_back([this] { RunThread(); });
}

IoCore::~IoCore() {
  // The owner (TcpTransport) shuts down first; this is a safety net for
  // paths that never reached it.
  Shutdown();
}

void IoCore::RunThread() {
  for (;;) {
    try {
      io_.run();
      return;
    } catch (const std::exception& e) {
      // Exceptions must not cross Asio handlers; one that escapes a user
      // handler is logged and the thread keeps serving.
      spdlog::error("net: exception escaped an io handler: {}", e.what());
    } catch (...) {
      spdlog::error("net: unknown exception escaped an io handler");
    }
  }
}

bool IoCore::Track(std::weak_ptr<Closable> object) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return false;
  // Drop entries of objects already gone so the list stays proportional to
  // live channels and servers.
  std::erase_if(tracked_, [](const std::weak_ptr<Closable>& w) { return w.expired(); });
  tracked_.push_back(std::move(object));
  return true;
}

bool IoCore::InIoThread() { return io_.get_executor().running_in_this_thread(); }

void IoCore::Shutdown() {
  if (InIoThread()) {
    spdlog::error("net: transport shutdown requested from its own io thread; ignored");
    assert(false && "TcpTransport::Shutdown called from a transport thread");
    return;
  }
  std::lock_guard<std::mutex> shutdown_lock(shutdown_mu_);
  if (joined_) return;
  std::vector<std::weak_ptr<Closable>> tracked;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    tracked.swap(tracked_);
  }
  for (auto& weak : tracked) {
    if (auto object = weak.lock()) object->CloseForShutdown();
  }
  tracked.clear();
  guard_.reset();
  for (auto& t : threads_) t.join();
  threads_.clear();
  joined_ = true;
}

}  // namespace tally::net::internal
