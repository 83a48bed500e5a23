// Thread roles in the thread statistics (base/threads.h): a marked parallel region records the
// role of the thread that started it, whichever thread that is, so a server test can rely on
// "no region was started by an HTTP thread" (tests/threads/threads_test.py). The truth here is
// the role each test thread gave itself before starting the region.
#include "base/threads.h"

#include <gtest/gtest.h>
#include <omp.h>

#include <thread>

namespace dsinfer {
namespace {

constexpr uint32_t Bit(ThreadRole r) { return 1u << static_cast<int>(r); }

// A parallel region of `team` threads in which every member notes `site`.
void RunRegion(ThreadSite& site, int team) {
#pragma omp parallel num_threads(team)
  site.Note();
}

TEST(ThreadRoleTest, MainThreadIsMain) {
  // Static initialisation (on the main thread) names it; gtest runs tests on the main thread.
  EXPECT_EQ(CurrentThreadRole(), ThreadRole::kMain);
  ThreadSite site("test.main");
  RunRegion(site, 2);
  EXPECT_EQ(site.started_by(), Bit(ThreadRole::kMain));
}

TEST(ThreadRoleTest, RegionsRecordTheThreadThatStartedThem) {
  for (ThreadRole role : {ThreadRole::kEngine, ThreadRole::kHttp, ThreadRole::kOther}) {
    for (int team : {1, 2, 3}) {
      ThreadSite site("test.role");
      std::thread t([&] {
        EXPECT_EQ(CurrentThreadRole(), ThreadRole::kOther);  // a new thread has no role yet
        SetThreadRole(role);
        RunRegion(site, team);
      });
      t.join();
      // The OpenMP workers of the team (role "other") are not starters; only member 0 counts.
      EXPECT_EQ(site.started_by(), Bit(role)) << ThreadRoleName(role) << ", team " << team;
    }
  }
}

TEST(ThreadRoleTest, TwoStartersBothRecorded) {
  ThreadSite site("test.two");
  std::thread http([&] {
    SetThreadRole(ThreadRole::kHttp);
    RunRegion(site, 2);
  });
  http.join();
  RunRegion(site, 2);
  EXPECT_EQ(site.started_by(), Bit(ThreadRole::kHttp) | Bit(ThreadRole::kMain));
}

TEST(ThreadRoleTest, Names) {
  EXPECT_STREQ(ThreadRoleName(ThreadRole::kMain), "main");
  EXPECT_STREQ(ThreadRoleName(ThreadRole::kEngine), "engine");
  EXPECT_STREQ(ThreadRoleName(ThreadRole::kHttp), "http");
  EXPECT_STREQ(ThreadRoleName(ThreadRole::kOther), "other");
}

}  // namespace
}  // namespace dsinfer
