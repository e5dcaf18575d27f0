// The GPU binary's one line about its seeds, printed before the first test (see cuda_support.h).
#include <cstdio>

#include "tests/gpu/cuda_support.h"

namespace mom::test {
namespace {

class SeedEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    std::printf("MOM_TEST_SEED=%llu: every test's random inputs derive from it and the test's name; "
                "set it to this value to replay them, to another to draw others\n",
                static_cast<unsigned long long>(base_seed()));
    std::fflush(stdout);
  }
};

// Registered before main (gtest_main) runs the tests; gtest owns and deletes it.
[[maybe_unused]] ::testing::Environment* const kSeedEnvironment =
    ::testing::AddGlobalTestEnvironment(new SeedEnvironment);

}  // namespace
}  // namespace mom::test
