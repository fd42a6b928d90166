// unit_tests/error_rule.hpp - for tests of refusals: the rule a call is
// refused by (dilated::Error::rule() of what it throws), or "none" when it
// returns. One place for what five test files each wrote as a lambda.
#pragma once

#include <string>

#include "dilated/error.hpp"

namespace dilated_test {

template <class Call>
std::string rule_of(Call&& call) {
  try {
    call();
  } catch (const dilated::Error& e) {
    return e.rule();
  }
  return "none";
}

}  // namespace dilated_test
