// Error types and the GW_ENFORCE family. Every failure carries enough context (op, rank, peer,
// sizes) for a user to act on; bindings map each type to its own Python exception.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace gw {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& msg) : std::runtime_error(msg) {}
};
// Bad input from the caller, detected before anything is sent.
class InvalidArgument : public Error {
 public:
  using Error::Error;
};
// A deadline passed while waiting for peers.
class TimeoutError : public Error {
 public:
  using Error::Error;
};
// A peer died, closed its connection or aborted the communicator.
class PeerError : public Error {
 public:
  using Error::Error;
};
// Ranks called different collectives (op, dtype, count or root) at the same sequence number.
class MismatchError : public Error {
 public:
  using Error::Error;
};
// A malformed frame or a failed authentication handshake.
class ProtocolError : public Error {
 public:
  using Error::Error;
};

namespace detail {
template <typename... Args>
std::string str(const Args&... args) {
  std::ostringstream ss;
  (ss << ... << args);
  return ss.str();
}
}  // namespace detail

using detail::str;

}  // namespace gw

// Throws ExcType with the message pieces concatenated (streamed).
#define GW_THROW(ExcType, ...) throw ExcType(::gw::str(__VA_ARGS__))

// Internal invariant check: names the condition and the source location.
#define GW_ENFORCE(cond, ...)                                                           \
  do {                                                                                  \
    if (!(cond)) {                                                                      \
      throw ::gw::Error(                                                                \
          ::gw::str(__FILE__, ":", __LINE__, ": ", #cond, " failed. ", ##__VA_ARGS__)); \
    }                                                                                   \
  } while (0)

// User-input check: raises InvalidArgument with the given message.
#define GW_CHECK_ARG(cond, ...)                                       \
  do {                                                                \
    if (!(cond)) throw ::gw::InvalidArgument(::gw::str(__VA_ARGS__)); \
  } while (0)
