#include "gradwire/transport/tcp/handshake.h"

#include <cstring>
#include <random>

#include "gradwire/common/error.h"
#include "gradwire/common/hmac.h"

namespace gw {
namespace tcp {
namespace {

constexpr uint32_t kHandshakeMagic = 0x53485747;  // "GWHS"
constexpr uint16_t kHandshakeVersion = 2;         // 2: OK carries a status

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
  uint16_t status;  // HandshakeStatus
  uint8_t mac[32];
};
#pragma pack(pop)
static_assert(sizeof(Hello) == ServerHandshake::kHelloBytes, "HELLO layout");
static_assert(sizeof(Auth) == ServerHandshake::kAuthBytes, "AUTH layout");

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

ServerHandshake::ServerHandshake(uint32_t comm_id, int my_rank, int world_size,
                                 const std::string& secret)
    : comm_id_(comm_id), rank_(my_rank), world_size_(world_size), secret_(secret) {
  Hello hello{kHandshakeMagic, kHandshakeVersion, 0, comm_id, my_rank, {}};
  fill_nonce(hello.nonce);
  memcpy(hello_, &hello, sizeof(hello));
}

int ServerHandshake::check(const uint8_t* auth_bytes, std::string* reply) const {
  reply->clear();
  Auth auth;
  memcpy(&auth, auth_bytes, sizeof(auth));
  if (auth.magic != kHandshakeMagic) GW_THROW(ProtocolError, "not a gradwire peer (bad magic)");
  if (auth.version != kHandshakeVersion) {
    GW_THROW(ProtocolError, "handshake version ", auth.version, " (expected ", kHandshakeVersion,
             ")");
  }
  auto refuse = [&](HandshakeStatus why) {
    Ok ok{kHandshakeMagic, kHandshakeVersion, uint16_t(why), {}};
    reply->assign(reinterpret_cast<const char*>(&ok), sizeof(ok));
  };
  if (auth.comm_id != comm_id_) {
    refuse(HandshakeStatus::kWrongComm);
    GW_THROW(ProtocolError, "peer belongs to communicator ", auth.comm_id, ", not ", comm_id_);
  }
  if (auth.client_rank <= rank_ || auth.client_rank >= world_size_) {
    refuse(HandshakeStatus::kUnexpectedRank);
    GW_THROW(ProtocolError, "peer claims rank ", auth.client_rank,
             ", which should not connect to rank ", rank_);
  }
  Hello hello;
  memcpy(&hello, hello_, sizeof(hello));
  Digest expected = transcript_mac(secret_, "gw-client", comm_id_, auth.client_rank, rank_,
                                   hello.nonce, auth.nonce);
  if (!digest_equal(expected, to_digest(auth.mac))) {
    refuse(HandshakeStatus::kBadMac);
    GW_THROW(ProtocolError, "authentication failed for a peer claiming rank ", auth.client_rank,
             " (its secret differs: wrong or missing GRADWIRE_AUTH_TOKEN)");
  }
  Ok ok{kHandshakeMagic, kHandshakeVersion, uint16_t(HandshakeStatus::kAccepted), {}};
  Digest mac = transcript_mac(secret_, "gw-server", comm_id_, auth.client_rank, rank_, hello.nonce,
                              auth.nonce);
  memcpy(ok.mac, mac.data(), 32);
  reply->assign(reinterpret_cast<const char*>(&ok), sizeof(ok));
  return auth.client_rank;
}

int handshake_as_server(const Socket& s, uint32_t comm_id, int my_rank, int world_size,
                        const std::string& secret, std::chrono::steady_clock::time_point deadline) {
  ServerHandshake hs(comm_id, my_rank, world_size, secret);
  send_all(s, hs.hello(), ServerHandshake::kHelloBytes, deadline);
  uint8_t auth[ServerHandshake::kAuthBytes];
  recv_all(s, auth, sizeof(auth), deadline);
  std::string reply;
  try {
    int rank = hs.check(auth, &reply);
    send_all(s, reply.data(), reply.size(), deadline);
    return rank;
  } catch (const ProtocolError&) {
    if (!reply.empty()) {
      try {
        send_all(s, reply.data(), reply.size(), deadline);
      } catch (const Error&) {
        // the refusal is a courtesy: the error below is what counts
      }
    }
    throw;
  }
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
  } catch (const TimeoutError&) {
    GW_THROW(TimeoutError, "rank ", server_rank,
             " did not answer our authentication before the deadline");
  } catch (const PeerError& e) {
    GW_THROW(PeerError, "rank ", server_rank,
             " closed the connection without answering our authentication (", e.what(),
             "): it gave up waiting for it, or is shutting down");
  }
  if (ok.magic != kHandshakeMagic || ok.version != kHandshakeVersion) {
    GW_THROW(ProtocolError, "rank ", server_rank, " answered with something that is not a ",
             "gradwire handshake reply");
  }
  switch (HandshakeStatus(ok.status)) {
    case HandshakeStatus::kAccepted:
      break;
    case HandshakeStatus::kBadMac:
      GW_THROW(ProtocolError, "rank ", server_rank,
               " refused our authentication: our secrets differ (do all ranks share the same "
               "GRADWIRE_AUTH_TOKEN?)");
    case HandshakeStatus::kWrongComm:
      GW_THROW(ProtocolError, "rank ", server_rank, " refused us: it serves another communicator");
    case HandshakeStatus::kUnexpectedRank:
      GW_THROW(ProtocolError, "rank ", server_rank, " refused us: rank ", my_rank,
               " should not dial it");
    default:
      GW_THROW(ProtocolError, "rank ", server_rank, " refused us (status ", ok.status, ")");
  }
  Digest expected =
      transcript_mac(secret, "gw-server", comm_id, my_rank, server_rank, hello.nonce, auth.nonce);
  if (!digest_equal(expected, to_digest(ok.mac))) {
    GW_THROW(ProtocolError, "rank ", server_rank, " failed to prove it knows the job secret");
  }
}

}  // namespace tcp
}  // namespace gw
