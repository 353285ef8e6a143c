// SHA-256 and HMAC-SHA256 (FIPS 180-4, RFC 2104) for the connection handshake. Small and
// dependency-free; the handshake hashes a few hundred bytes per connection.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace gw {

using Digest = std::array<uint8_t, 32>;

Digest sha256(const void* data, size_t len);
Digest hmac_sha256(const std::string& key, const void* msg, size_t len);
// Constant-time comparison, so a peer cannot learn a valid MAC byte by byte.
bool digest_equal(const Digest& a, const Digest& b);
std::string to_hex(const Digest& d);

}  // namespace gw
