// tests/support/test_pki.hpp — certificates for TLS tests, made at run time
// with the openssl command (Debian package openssl) in a temporary folder
// that the destructor removes.
//
//   greenev::testing::test_pki pki;
//   tls_context ctx({.role = tls_role::server, .certificate_chain_file = pki.path("server.pem"),
//                    .private_key_file = pki.path("server.key")});
//
// Files (PEM, EC P-256 keys, valid for two days):
//   ca.pem / ca.key                "greenev test CA"
//   server.pem / server.key        CN=localhost, SAN DNS:localhost and IP:127.0.0.1, signed by the CA
//   wrong.pem / wrong.key          CN=wrong.example, SAN DNS:wrong.example, signed by the CA
//   self.pem / self.key            CN=localhost, SAN as server.pem, self-signed (not trusted)
// Blocks the thread while openssl runs (set-up, not greenev code).
#pragma once

#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <system_error>

#include "child_process.hpp"

namespace greenev::testing {

class test_pki {
 public:
  test_pki() {
    char pattern[] = "/tmp/greenev-pki-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) throw std::runtime_error("mkdtemp failed");
    directory_ = pattern;
    try {
      make();
    } catch (...) {
      std::error_code ignored;
      std::filesystem::remove_all(directory_, ignored);
      throw;
    }
  }
  test_pki(const test_pki&) = delete;
  test_pki& operator=(const test_pki&) = delete;
  ~test_pki() {
    std::error_code ignored;
    std::filesystem::remove_all(directory_, ignored);
  }

  /// The full path of one of the files above.
  [[nodiscard]] std::string path(const std::string& name) const { return (directory_ / name).string(); }
  [[nodiscard]] const std::filesystem::path& directory() const noexcept { return directory_; }

 private:
  void make() {
    const std::string ec = "ec_paramgen_curve:prime256v1";
    run_program({"openssl", "req",
                 "-x509",   "-newkey",
                 "ec",      "-pkeyopt",
                 ec,        "-nodes",
                 "-days",   "2",
                 "-subj",   "/CN=greenev test CA",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-keyout", path("ca.key"),
                 "-out",    path("ca.pem")});
    leaf("server", "localhost", "DNS:localhost,IP:127.0.0.1", 2);
    leaf("wrong", "wrong.example", "DNS:wrong.example", 3);
    run_program({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", ec, "-nodes", "-days", "2", "-subj",
                 "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout",
                 path("self.key"), "-out", path("self.pem")});
  }

  // A certificate for `name` with `alt_names`, signed by the CA.
  void leaf(const std::string& file, const std::string& name, const std::string& alt_names, int serial) {
    std::ofstream(directory_ / (file + ".ext"))
        << "subjectAltName=" << alt_names << "\nbasicConstraints=CA:FALSE\n"
        << "keyUsage=digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n";
    run_program({"openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                 "-subj", "/CN=" + name, "-keyout", path(file + ".key"), "-out", path(file + ".csr")});
    run_program({"openssl", "x509", "-req", "-in", path(file + ".csr"), "-CA", path("ca.pem"), "-CAkey",
                 path("ca.key"), "-set_serial", std::to_string(serial), "-days", "2", "-extfile",
                 path(file + ".ext"), "-out", path(file + ".pem")});
  }

  std::filesystem::path directory_;
};

}  // namespace greenev::testing
