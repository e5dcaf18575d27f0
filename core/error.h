// mom::Error and the check macros.
//
// Every user-caused problem (bad shape, dtype, device, index, file, flag) throws mom::Error whose
// message starts with the op or component in brackets:
//     [masked_linear] x has 96 columns, weight[0] expects 128
// MOM_CHECK(cond, "op", a << b << ...) builds that message with a stream only when cond is false.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace mom {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};

}  // namespace mom

#define MOM_THROW(op, ...)                              \
  do {                                                  \
    std::ostringstream mom_err_stream_;                 \
    mom_err_stream_ << "[" << (op) << "] " << __VA_ARGS__; \
    throw ::mom::Error(mom_err_stream_.str());          \
  } while (0)

#define MOM_CHECK(cond, op, ...)      \
  do {                                \
    if (!(cond)) MOM_THROW(op, __VA_ARGS__); \
  } while (0)
