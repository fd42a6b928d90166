#include "test_harness.hpp"
TEST(Placeholder, Builds) { EXPECT_TRUE(true); }
