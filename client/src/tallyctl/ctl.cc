#include "ctl.h"

#include <iostream>

#include "json.h"
#include "tally/base/ids.h"

namespace tally::ctl {

std::vector<std::string> Globals::EndpointList() const {
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= endpoints.size()) {
    size_t comma = endpoints.find(',', start);
    if (comma == std::string::npos) comma = endpoints.size();
    if (comma > start) out.push_back(endpoints.substr(start, comma - start));
    start = comma + 1;
  }
  return out;
}

int Fail(bool json, const Status& st, std::string_view who) {
  if (json) {
    std::cout << JsonObject()
                     .Add("error", CodeName(st.code()))
                     .Add("message", st.message())
                     .Add("retryable", st.retryable())
                     .str()
              << "\n";
  } else {
    std::cerr << who << ": " << st.ToString() << "\n";
  }
  return kExitFailed;
}

std::string EntryJson(const proto::LogEntry& e) {
  std::string streams = "[";
  for (int i = 0; i < e.streams_size(); ++i) {
    if (i) streams += ",";
    streams += JsonString(StreamId{e.streams(i).hi(), e.streams(i).lo()}.ToHex());
  }
  streams += "]";
  return JsonObject()
      .Add("address", e.address())
      .Add("epoch", e.epoch())
      .Add("type", e.type() == proto::HOLE ? "hole" : "data")
      .AddRaw("streams", streams)
      .Add("data", e.payload())
      .str();
}

int NoData(const Globals& g, uint64_t address, const std::string& what) {
  if (g.json()) {
    std::cout << JsonObject().Add("address", address).Add("type", what).str() << "\n";
    return kExitNoData;
  }
  std::cerr << "address " << address << " is ";
  if (what == "hole") {
    std::cerr << "a hole (no data will ever be there)\n";
  } else if (what == "trimmed") {
    std::cerr << "trimmed (below the trim mark; its data is gone)\n";
  } else {
    std::cerr << "unwritten\n";
  }
  return kExitNoData;
}

}  // namespace tally::ctl
