// patch_all() with an unmodified libpq against a real PostgreSQL server on
// loopback (tests/support/postgres_server.hpp): queries in greenlets are
// cooperative, and a query cut short by a timeout or a kill leaves a dead
// connection — libpq's next query fails rather than reading the abandoned
// query's rows — while a fresh or reset connection works. Each TEST is its
// own process (ctest), with its own server.
#include <gtest/gtest.h>
#include <libpq-fe.h>

#include <chrono>
#include <memory>
#include <string>

#include <greenev/monkey.hpp>
#include <greenev/task.hpp>
#include <greenev/timeout.hpp>

#include "support/hub_fixture.hpp"
#include "support/postgres_server.hpp"
#include "support/timing.hpp"

namespace {

using namespace std::chrono_literals;
using greenev::testing::since;

struct result_deleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using result = std::unique_ptr<PGresult, result_deleter>;

struct connection_deleter {
  void operator()(PGconn* c) const noexcept { PQfinish(c); }
};
using connection = std::unique_ptr<PGconn, connection_deleter>;

class patch_libpq_test : public greenev::testing::hub_test {
 protected:
  void SetUp() override {
    greenev::monkey::patch_all();
    hub_test::SetUp();
  }

  [[nodiscard]] connection connect() const {
    connection c(PQconnectdb(server_.conninfo().c_str()));
    EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << server_.log();
    return c;
  }

  greenev::testing::postgres_server server_;
};

// The single value `query` returns, or "" with a test failure.
std::string value_of(PGconn* c, const char* query) {
  const result r(PQexec(c, query));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1) {
    ADD_FAILURE() << query << ": " << PQerrorMessage(c);
    return "";
  }
  return PQgetvalue(r.get(), 0, 0);
}

// After an interrupted query, the next one on the same connection must fail:
// never succeed with the rows of the query that was abandoned.
void expect_next_query_fails(PGconn* c) {
  const auto start = std::chrono::steady_clock::now();
  const result r(PQexec(c, "select 'next query'"));
  const ExecStatusType status = PQresultStatus(r.get());
  EXPECT_NE(status, PGRES_TUPLES_OK) << "the interrupted connection answered: "
                                     << (PQntuples(r.get()) > 0 ? PQgetvalue(r.get(), 0, 0) : "(no rows)");
  EXPECT_NE(status, PGRES_COMMAND_OK);
  EXPECT_LT(since(start), 2s) << "it waited for the abandoned query instead of failing at once";
}

TEST_F(patch_libpq_test, queries_in_greenlets_run_concurrently) {
  std::vector<greenev::task<std::string>> queries;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < 4; ++i) {
    queries.push_back(greenev::spawn([this, i] {
      const connection c = connect();
      return value_of(c.get(), ("select " + std::to_string(i) + " from pg_sleep(1)").c_str());
    }));
  }
  for (int i = 0; i < 4; ++i) EXPECT_EQ(queries[static_cast<std::size_t>(i)].get(), std::to_string(i));
  EXPECT_LT(since(start), 3.5s) << "four 1 s queries ran one after another";
}

TEST_F(patch_libpq_test, a_query_cut_short_by_a_timeout_leaves_a_dead_connection) {
  const connection c = connect();
  EXPECT_EQ(value_of(c.get(), "select 1"), "1");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_THROW(
      greenev::with_timeout(0.3,
                            [&] {
                              greenev::monkey::blocking_call([&] {
                                const result r(PQexec(c.get(), "select 'abandoned' from pg_sleep(2)"));
                              });
                            }),
      greenev::timeout_error);
  EXPECT_LT(since(start), 1.5s);
  // Wait past the abandoned query's end, so its answer is there to misread.
  greenev::sleep(2.0);
  expect_next_query_fails(c.get());
  expect_next_query_fails(c.get());  // and it stays dead

  // PQreset closes the socket and connects again: the new socket (often the
  // same fd number) is healthy.
  PQreset(c.get());
  ASSERT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
  EXPECT_EQ(value_of(c.get(), "select 'after reset'"), "after reset");
  const connection fresh = connect();
  EXPECT_EQ(value_of(fresh.get(), "select 42"), "42");
}

TEST_F(patch_libpq_test, a_query_cut_short_by_a_kill_leaves_a_dead_connection) {
  connection c = connect();
  auto victim = greenev::spawn([&] {
    greenev::monkey::blocking_call(
        [&] { const result r(PQexec(c.get(), "select 'abandoned' from pg_sleep(2)")); });
  });
  greenev::sleep(0.2);
  victim.kill();
  EXPECT_TRUE(victim.killed());
  greenev::sleep(2.0);
  expect_next_query_fails(c.get());
  const int old_fd = PQsocket(c.get());
  c.reset();                           // PQfinish closes the dead socket ...
  const connection fresh = connect();  // ... so its number may come back, healthy
  EXPECT_EQ(value_of(fresh.get(), "select 'fresh'"), "fresh")
      << "old fd " << old_fd << ", new fd " << PQsocket(fresh.get());
}

}  // namespace
