// Client::Trim: a prefix trim of the whole log, one log.trim per distinct
// log unit of the layout. Protocol: docs/protocol.md ("Trim").

#include <algorithm>
#include <string>
#include <vector>

#include "client_impl.h"
#include "tally/proto/logunit.pb.h"

namespace tally::client {

namespace {

// Every log unit of the layout once, in first-seen order (segment, stripe,
// chain position).
std::vector<std::string> LogUnits(const Layout& layout) {
  std::vector<std::string> units;
  for (const auto& seg : layout.segments()) {
    for (const auto& chain : seg.stripes) {
      for (const auto& unit : chain) {
        if (std::find(units.begin(), units.end(), unit) == units.end()) units.push_back(unit);
      }
    }
  }
  return units;
}

}  // namespace

Result<TrimResult> Client::Trim(Address mark) {
  if (mark.value() > 0) {
    // Addresses at or above the tail were never issued: trimming them would
    // make future appends fail, and the units would keep no address that
    // tells a restarted sequencer where the log ends.
    TALLY_ASSIGN_OR_RETURN(Address tail, Tail());
    if (mark >= tail) {
      return InvalidArgument("cannot trim at or above the global tail " + ToString(tail) +
                             " (asked " + ToString(mark) +
                             "); trim below the tail, and below "
                             "every consumer's position");
    }
  }
  return impl_->WithLayout<TrimResult>(
      [&](const Layout& l, int64_t deadline) -> Result<TrimResult> {
        TrimResult out;
        out.mark = mark;
        std::vector<std::string> units = LogUnits(l);
        std::vector<std::pair<std::string, Status>> failed;
        for (const auto& unit : units) {
          proto::TrimRequest req;
          req.set_epoch(l.epoch().value());
          req.set_address(mark.value());
          // Each unit gets at least one attempt even after an unreachable
          // one used up the deadline (Impl::Call tries before it checks).
          auto r = impl_->Call<proto::TrimResponse>(unit, "log.trim", req, deadline);
          if (r.ok()) {
            out.units.push_back({unit, Address(r->trim_mark())});
          } else {
            failed.emplace_back(unit, r.status());
          }
        }
        if (failed.empty()) return out;
        // A stale epoch wins the code, so that WithLayout refreshes the
        // layout and trims again (log.trim is idempotent).
        Code code = failed.front().second.code();
        for (const auto& [unit, st] : failed) {
          if (internal::IsEpochError(st)) code = st.code();
        }
        std::string msg = "trim below " + ToString(mark) + ": " + std::to_string(failed.size()) +
                          " of " + std::to_string(units.size()) + " log units failed";
        for (const auto& [unit, st] : failed) msg += "; " + unit + ": " + st.ToString();
        if (!out.units.empty()) {
          msg += "; trimmed on";
          for (const auto& u : out.units) msg += " " + u.endpoint;
        }
        msg += "; a partial trim is safe: run the same trim again once the failed units are back";
        return Status(code, std::move(msg));
      });
}

}  // namespace tally::client
