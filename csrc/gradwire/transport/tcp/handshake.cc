#include "gradwire/transport/tcp/handshake.h"

#include <cstring>
#include <random>

#include "gradwire/common/error.h"
#include "gradwire/common/hmac.h"

namespace gw {
namespace tcp {
namespace {

constexpr uint32_t kHandshakeMagic = 0x53485747;  // "GWHS"
constexpr uint16_t kHandshakeVersion = 1;

#pragma pack(push, 1)
struct Hello {
  uint32_t magic;
  uint16_t version;
  uint16_t pad;
  uint32_t comm_id;
  int32_t server_rank;
  uint8_t nonce[16];
};
struct Auth {
  uint32_t magic;
  uint16_t version;
  uint16_t pad;
  uint32_t comm_id;
  int32_t client_rank;
  uint8_t nonce[16];
  uint8_t mac[32];
};
struct Ok {
  uint32_t magic;
  uint16_t version;
  uint16_t pad;
  uint8_t mac[32];
};
#pragma pack(pop)

void fill_nonce(uint8_t* out) {
  static thread_local std::random_device rd;
  for (int i = 0; i < 16; i += 4) {
    uint32_t v = rd();
    memcpy(out + i, &v, 4);
  }
}

Digest transcript_mac(const std::string& secret, const char* label, uint32_t comm_id,
                      int client_rank, int server_rank, const uint8_t* server_nonce,
                      const uint8_t* client_nonce) {
  std::string msg(label);
  msg.append(reinterpret_cast<const char*>(&comm_id), 4);
  msg.append(reinterpret_cast<const char*>(&client_rank), 4);
  msg.append(reinterpret_cast<const char*>(&server_rank), 4);
  msg.append(reinterpret_cast<const char*>(server_nonce), 16);
  msg.append(reinterpret_cast<const char*>(client_nonce), 16);
  return hmac_sha256(secret, msg.data(), msg.size());
}

Digest to_digest(const uint8_t* p) {
  Digest d;
  memcpy(d.data(), p, 32);
  return d;
}

}  // namespace

int handshake_as_server(const Socket& s, uint32_t comm_id, int my_rank, int world_size,
                        const std::string& secret, std::chrono::steady_clock::time_point deadline) {
  Hello hello{kHandshakeMagic, kHandshakeVersion, 0, comm_id, my_rank, {}};
  fill_nonce(hello.nonce);
  send_all(s, &hello, sizeof(hello), deadline);
  Auth auth;
  recv_all(s, &auth, sizeof(auth), deadline);
  if (auth.magic != kHandshakeMagic) GW_THROW(ProtocolError, "not a gradwire peer (bad magic)");
  if (auth.version != kHandshakeVersion) {
    GW_THROW(ProtocolError, "handshake version ", auth.version, " (expected ", kHandshakeVersion,
             ")");
  }
  if (auth.comm_id != comm_id) {
    GW_THROW(ProtocolError, "peer belongs to communicator ", auth.comm_id, ", not ", comm_id);
  }
  if (auth.client_rank <= my_rank || auth.client_rank >= world_size) {
    GW_THROW(ProtocolError, "peer claims rank ", auth.client_rank,
             ", which should not connect to rank ", my_rank);
  }
  Digest expected = transcript_mac(secret, "gw-client", comm_id, auth.client_rank, my_rank,
                                   hello.nonce, auth.nonce);
  if (!digest_equal(expected, to_digest(auth.mac))) {
    GW_THROW(ProtocolError, "authentication failed for a peer claiming rank ", auth.client_rank,
             " (wrong or missing GRADWIRE_AUTH_TOKEN)");
  }
  Ok ok{kHandshakeMagic, kHandshakeVersion, 0, {}};
  Digest reply = transcript_mac(secret, "gw-server", comm_id, auth.client_rank, my_rank,
                                hello.nonce, auth.nonce);
  memcpy(ok.mac, reply.data(), 32);
  send_all(s, &ok, sizeof(ok), deadline);
  return auth.client_rank;
}

void handshake_as_client(const Socket& s, uint32_t comm_id, int my_rank, int server_rank,
                         const std::string& secret,
                         std::chrono::steady_clock::time_point deadline) {
  Hello hello;
  recv_all(s, &hello, sizeof(hello), deadline);
  if (hello.magic != kHandshakeMagic || hello.version != kHandshakeVersion) {
    GW_THROW(ProtocolError, "rank ", server_rank,
             "'s address answered with something that is not a gradwire ", "handshake (version ",
             hello.version, ")");
  }
  if (hello.comm_id != comm_id || hello.server_rank != server_rank) {
    GW_THROW(ProtocolError, "expected rank ", server_rank, " of communicator ", comm_id,
             " but the listener is rank ", hello.server_rank, " of communicator ", hello.comm_id);
  }
  Auth auth{kHandshakeMagic, kHandshakeVersion, 0, comm_id, my_rank, {}, {}};
  fill_nonce(auth.nonce);
  Digest mac =
      transcript_mac(secret, "gw-client", comm_id, my_rank, server_rank, hello.nonce, auth.nonce);
  memcpy(auth.mac, mac.data(), 32);
  send_all(s, &auth, sizeof(auth), deadline);
  Ok ok;
  try {
    recv_all(s, &ok, sizeof(ok), deadline);
  } catch (const PeerError&) {
    GW_THROW(ProtocolError, "rank ", server_rank,
             " refused our authentication (do all ranks share the same GRADWIRE_AUTH_TOKEN?)");
  }
  Digest expected =
      transcript_mac(secret, "gw-server", comm_id, my_rank, server_rank, hello.nonce, auth.nonce);
  if (ok.magic != kHandshakeMagic || !digest_equal(expected, to_digest(ok.mac))) {
    GW_THROW(ProtocolError, "rank ", server_rank, " failed to prove it knows the job secret");
  }
}

}  // namespace tcp
}  // namespace gw
