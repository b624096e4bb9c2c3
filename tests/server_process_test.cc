// tally-server as a real process on loopback, driven with tallyctl: round
// trips, garbage bytes on a raw socket, SIGKILL and restart on the same data
// (every acknowledged write survives), and a clean SIGTERM.

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <thread>

#include "process_util.h"

namespace tally::testing {
namespace {

const std::string kServer = TALLY_SERVER_BIN;
const std::string kCtl = TALLYCTL_BIN;

class ServerProcessTest : public ::testing::Test {
 protected:
  void Start(const std::vector<std::string>& extra = {}) {
    std::string ready = dir_.path() + "/endpoint";
    std::remove(ready.c_str());
    std::vector<std::string> argv{
        kServer,        "--node-id", "1", "--listen", listen_, "--data-dir", dir_.path() + "/data",
        "--ready-file", ready};
    argv.insert(argv.end(), extra.begin(), extra.end());
    server_ = std::make_unique<Child>(argv, dir_.path() + "/server.log");
    endpoint_ = WaitForFile(ready, 20000);
    ASSERT_FALSE(endpoint_.empty()) << "server did not become ready; see " << dir_.path();
    listen_ = endpoint_;  // restart on the same port
  }

  // `tallyctl unit ARGS` against this server, sending `epoch`.
  CommandResult Ctl(const std::string& args, uint64_t epoch = 0) {
    return RunCommand(kCtl + " --endpoint " + endpoint_ + " --epoch " + std::to_string(epoch) +
                      " unit " + args);
  }

  // Sends `bytes` on a fresh connection and returns once the server closed it
  // or 2 s passed.
  void SendRaw(const std::string& bytes) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ASSERT_GE(fd, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    auto colon = endpoint_.rfind(':');
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint_.substr(colon + 1))));
    inet_pton(AF_INET, endpoint_.substr(0, colon).c_str(), &addr.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    (void)!write(fd, bytes.data(), bytes.size());
    shutdown(fd, SHUT_WR);
    timeval tv{2, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    char buf[256];
    while (read(fd, buf, sizeof(buf)) > 0) {
    }
    close(fd);
  }

  TempDir dir_;
  std::string listen_ = "127.0.0.1:0";
  std::string endpoint_;
  std::unique_ptr<Child> server_;
};

TEST_F(ServerProcessTest, WriteReadTailSealTrimThroughTallyctl) {
  Start();
  auto w = Ctl("write 5 'port eth0 up'");
  ASSERT_EQ(w.exit_code, 0) << w.out;
  EXPECT_EQ(w.out, "5\n");
  auto r = Ctl("read 5");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "port eth0 up\n");
  auto again = Ctl("write 5 other 2>&1");
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_NE(again.out.find("5"), std::string::npos) << again.out;
  EXPECT_NE(again.out.find("ALREADY_WRITTEN"), std::string::npos) << again.out;
  EXPECT_EQ(Ctl("read 6").exit_code, 3);  // unwritten
  auto tail = Ctl("-o json tail");
  EXPECT_NE(tail.out.find("\"local_tail\":6"), std::string::npos) << tail.out;
  EXPECT_EQ(Ctl("seal 2").exit_code, 0);
  auto stale = Ctl("write 6 late 2>&1", 1);
  EXPECT_EQ(stale.exit_code, 1);
  EXPECT_NE(stale.out.find("WRONG_EPOCH"), std::string::npos) << stale.out;
  EXPECT_EQ(Ctl("write 6 fine", 2).exit_code, 0);
  EXPECT_EQ(Ctl("trim 6", 2).exit_code, 0);
  EXPECT_EQ(Ctl("read 5", 2).exit_code, 3);  // trimmed
  EXPECT_EQ(Ctl("read 6", 2).out, "fine\n");
  // Two writes were committed (the duplicate and the stale one were not);
  // stats answer a stale epoch too.
  auto stats = Ctl("-o json stats", 1);
  ASSERT_EQ(stats.exit_code, 0) << stats.out;
  EXPECT_NE(stats.out.find("\"commits\":2,\"commit_records\":2,"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("\"sealed_epoch\":2,"), std::string::npos) << stats.out;
  EXPECT_NE(stats.out.find("{\"le_us\":null,\"count\":"), std::string::npos) << stats.out;
  auto text = Ctl("stats");
  EXPECT_EQ(text.exit_code, 0);
  EXPECT_NE(text.out.find("2 group commits in "), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("write + fdatasync per commit: mean "), std::string::npos) << text.out;
}

TEST_F(ServerProcessTest, GarbageBytesCloseOnlyThatConnection) {
  Start();
  ASSERT_EQ(Ctl("write 1 before").exit_code, 0);
  std::mt19937 rng(42);
  for (int i = 0; i < 20; ++i) {
    std::string junk(1 + rng() % 2000, '\0');
    for (auto& c : junk) c = static_cast<char>(rng());
    SendRaw(junk);
  }
  SendRaw(std::string("\x10\x00\x00\x00\x08\x01", 6));          // truncated frame
  SendRaw(std::string("\xff\xff\xff\x7f", 4) + "xxxx");         // absurd length prefix
  SendRaw(std::string("\x04\x00\x00\x00\xff\xff\xff\xff", 8));  // unparsable frame
  ASSERT_TRUE(server_->running());
  EXPECT_EQ(Ctl("read 1").out, "before\n");
  EXPECT_EQ(Ctl("write 2 after").exit_code, 0);
}

TEST_F(ServerProcessTest, AcknowledgedWritesSurviveSigkill) {
  Start();
  for (int i = 0; i < 50; ++i) {
    ASSERT_EQ(Ctl("write " + std::to_string(i) + " value-" + std::to_string(i)).exit_code, 0);
  }
  server_->SignalAndWait(SIGKILL);
  Start();
  for (int i = 0; i < 50; ++i) {
    EXPECT_EQ(Ctl("read " + std::to_string(i)).out, "value-" + std::to_string(i) + "\n");
  }
  EXPECT_EQ(Ctl("write 3 overwrite").exit_code, 1);  // write-once across restarts
}

TEST_F(ServerProcessTest, EitherWriteEngineReadsWhatTheOtherWrote) {
  Start({"--write-engine", "io_uring"});
  for (int i = 0; i < 20; ++i) {
    ASSERT_EQ(Ctl("write " + std::to_string(i) + " ring-" + std::to_string(i)).exit_code, 0);
  }
  EXPECT_GT(IoUringWorkers(server_->pid()), 0) << "--write-engine io_uring did not use a ring";
  server_->SignalAndWait(SIGKILL);
  Start();  // the default engine, sync
  for (int i = 20; i < 40; ++i) {
    ASSERT_EQ(Ctl("write " + std::to_string(i) + " sync-" + std::to_string(i)).exit_code, 0);
  }
  EXPECT_EQ(IoUringWorkers(server_->pid()), 0) << "the default (sync) engine used io_uring";
  server_->SignalAndWait(SIGKILL);
  Start({"--write-engine", "io_uring"});
  for (int i = 0; i < 40; ++i) {
    EXPECT_EQ(Ctl("read " + std::to_string(i)).out,
              (i < 20 ? "ring-" : "sync-") + std::to_string(i) + "\n");
  }
}

TEST_F(ServerProcessTest, UnknownWriteEngineRefusesToStartAndNamesTheChoices) {
  auto r = RunCommand(kServer + " --node-id 1 --listen 127.0.0.1:0 --data-dir " + dir_.path() +
                      "/data3 --write-engine aio 2>&1");
  EXPECT_EQ(r.exit_code, 2) << r.out;
  EXPECT_NE(r.out.find("unknown write engine 'aio'"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("io_uring"), std::string::npos) << r.out;
}

TEST_F(ServerProcessTest, SigtermStopsCleanly) {
  Start();
  ASSERT_EQ(Ctl("write 0 x").exit_code, 0);
  int status = server_->SignalAndWait(SIGTERM);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

TEST_F(ServerProcessTest, ExitWithStopsTheServerCleanlyWhenItsOwnerDies) {
  Child owner({"/bin/sleep", "60"}, dir_.path() + "/owner.log");
  Start({"--exit-with", std::to_string(owner.pid())});
  ASSERT_EQ(Ctl("write 0 x").exit_code, 0);
  EXPECT_TRUE(server_->running());
  owner.SignalAndWait(SIGKILL);  // the owner crashes: no cleanup of its own
  for (int i = 0; i < 100 && server_->running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_FALSE(server_->running()) << "the server outlived its owner";
  const std::string log = ReadAll(dir_.path() + "/server.log");
  EXPECT_NE(log.find("(--exit-with) exited; stopping"), std::string::npos) << log;
  EXPECT_NE(log.find("stopped cleanly"), std::string::npos) << log;
  // Its data is intact: a plain restart serves the write.
  Start();
  EXPECT_EQ(Ctl("read 0").out, "x\n");
}

TEST_F(ServerProcessTest, ExitWithAProcessThatIsGoneRefusesToStart) {
  pid_t gone = fork();
  if (gone == 0) _exit(0);
  ASSERT_GT(gone, 0);
  waitpid(gone, nullptr, 0);  // reaped: the pid names no process now
  auto r = RunCommand(kServer + " --node-id 1 --listen 127.0.0.1:0 --data-dir " + dir_.path() +
                      "/data2 --exit-with " + std::to_string(gone) + " 2>&1");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("no such process"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace tally::testing
