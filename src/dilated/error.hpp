// dilated/error.hpp - the one exception type the library throws.
//
// Every validation failure names the offending value *and* the rule it broke,
// so a user reading a log line knows what to change without opening the docs.
#pragma once

#include <stdexcept>
#include <string>

namespace dilated {

class Error : public std::invalid_argument {
 public:
  Error(std::string rule, const std::string& what)
      : std::invalid_argument("dilated-attention: " + what + " [rule: " + rule + "]"),
        rule_(std::move(rule)) {}
  // Short machine-readable rule id, e.g. "shape.seq_len_divisible_by_segment".
  const std::string& rule() const noexcept { return rule_; }

 private:
  std::string rule_;
};

}  // namespace dilated
