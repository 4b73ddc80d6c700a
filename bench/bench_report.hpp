// Shared by the benchmark programs: a console reporter that remembers each
// benchmark's time per operation and, after the usual table, prints
//   time NAME = X ns
//   ratio A/B = R [(goal <= G)]        (same-run ratios against baselines)
//   goal NAME = X ns (goal <= G ns) MET|MISSED
// which bench/run.sh collects across runs. Time per operation is the
// "per_op" counter when a benchmark sets one (in seconds), else real time
// per iteration; with --benchmark_repetitions, the median.
#pragma once

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

namespace greenev::bench {

struct ratio {
  const char* numerator;
  const char* denominator;
  double goal = 0;  // 0: informational
};

struct goal {
  const char* name;
  double ns;  // greenev's goal, in ns (the goals and their reasons: docs/benchmarks.md)
};

class summary_reporter : public benchmark::ConsoleReporter {
 public:
  summary_reporter(std::span<const ratio> ratios, std::span<const goal> goals)
      : ConsoleReporter(isatty(STDOUT_FILENO) == 1 ? OO_ColorTabular : OO_Tabular),
        ratios_(ratios),
        goals_(goals) {}

  void ReportRuns(const std::vector<Run>& runs) override {
    ConsoleReporter::ReportRuns(runs);
    for (const Run& run : runs) {
      if (run.run_type != Run::RT_Iteration || failed(run)) continue;
      std::string name = run.run_name.function_name;
      if (name.starts_with("BM_")) name.erase(0, 3);
      const auto counter = run.counters.find("per_op");
      samples_[name].push_back(counter != run.counters.end()
                                   ? counter->second.value * 1e9
                                   : run.GetAdjustedRealTime() /
                                         benchmark::GetTimeUnitMultiplier(run.time_unit) * 1e9);
    }
  }

  void print_summary() const {
    for (const auto& [name, samples] : samples_)
      std::printf("time %s = %.2f ns\n", name.c_str(), median(samples));
    for (const ratio& r : ratios_) {
      const auto numerator = samples_.find(r.numerator);
      const auto denominator = samples_.find(r.denominator);
      if (numerator == samples_.end() || denominator == samples_.end()) continue;  // filtered out
      std::printf("ratio %s/%s = %.2f", r.numerator, r.denominator,
                  median(numerator->second) / median(denominator->second));
      if (r.goal > 0) std::printf(" (goal <= %.2f)", r.goal);
      std::printf("\n");
    }
    for (const goal& g : goals_) {
      const auto found = samples_.find(g.name);
      if (found == samples_.end()) continue;
      const double ns = median(found->second);
      std::printf("goal %s = %.2f ns (goal <= %.0f ns) %s\n", g.name, ns, g.ns,
                  ns <= g.ns ? "MET" : "MISSED");
    }
    std::fflush(stdout);
  }

 private:
  template <class R>
  static bool failed(const R& run) {
    if constexpr (requires { run.skipped; }) {  // Google Benchmark >= 1.8
      return static_cast<bool>(run.skipped);
    } else {
      return run.error_occurred;
    }
  }
  static double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t mid = values.size() / 2;
    return values.size() % 2 == 1 ? values[mid] : (values[mid - 1] + values[mid]) / 2;
  }

  std::span<const ratio> ratios_;
  std::span<const goal> goals_;
  std::map<std::string, std::vector<double>> samples_;
};

// The whole main() of a benchmark program.
inline int run_benchmarks(int argc, char** argv, std::span<const ratio> ratios, std::span<const goal> goals) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  // A reporter passed in ignores --benchmark_format and --benchmark_color.
  summary_reporter reporter(ratios, goals);
  benchmark::RunSpecifiedBenchmarks(&reporter);
  reporter.print_summary();
  benchmark::Shutdown();
  return 0;
}

}  // namespace greenev::bench
