// The examples' command-line parsing: `--name VALUE` options, -h/--help,
// optional positional arguments, and a command after `--`. A bad argument prints
// "<program>: <what is wrong>", a blank line and the usage text to stderr and
// makes parse() return 2; --help prints the usage to stdout and returns 0.
#pragma once

#include <cmath>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace examples {

class command_line {
 public:
  command_line(std::string program, std::string usage)
      : program_(std::move(program)), usage_(std::move(usage)) {}

  /// `--name TEXT`: any non-empty text.
  void text(std::string name, std::string& out) {
    add(std::move(name), [&out](const std::string& value) { return !(out = value).empty(); });
  }
  /// `--name WORD`, one of `allowed`.
  void choice(std::string name, std::string& out, std::vector<std::string> allowed) {
    add(std::move(name), [&out, allowed = std::move(allowed)](const std::string& value) {
      for (const auto& word : allowed) {
        if (value == word) return out = value, true;
      }
      return false;
    });
  }
  /// `--name N`: a whole number in [low, high].
  void integer(std::string name, long& out, long low, long high) {
    add(std::move(name), [&out, low, high](const std::string& value) {
      double number = 0;
      if (!parse_number(value, number) || number != std::floor(number) || number < static_cast<double>(low) ||
          number > static_cast<double>(high))
        return false;
      return out = static_cast<long>(number), true;
    });
  }
  /// `--name X`: a finite number in [low, high].
  void number(std::string name, double& out, double low, double high) {
    add(std::move(name), [&out, low, high](const std::string& value) {
      double number = 0;
      if (!parse_number(value, number) || number < low || number > high) return false;
      return out = number, true;
    });
  }
  /// Arguments that are not options go to `out` (without this they are errors).
  void positional(std::vector<std::string>& out) { positional_ = &out; }
  /// Everything after a `--` goes to `out` as it is (without this `--` is an error).
  void rest(std::vector<std::string>& out) { rest_ = &out; }

  /// Empty: carry on. Otherwise the exit status: 0 after --help, 2 after a bad argument.
  std::optional<int> parse(int argc, char** argv) const {
    for (int i = 1; i < argc; ++i) {
      const std::string arg = argv[i];
      if (arg == "-h" || arg == "--help") {
        std::cout << usage_;
        return 0;
      }
      if (arg == "--" && rest_ != nullptr) {
        rest_->assign(argv + i + 1, argv + argc);
        return std::nullopt;
      }
      const auto option = find(arg);
      if (option == nullptr) {
        if (positional_ != nullptr && !arg.starts_with("-")) {
          positional_->push_back(arg);
          continue;
        }
        return error("unknown argument '" + arg + "'");
      }
      if (++i == argc) return error(arg + " needs a value");
      if (!option->second(argv[i])) return error("bad value '" + std::string(argv[i]) + "' for " + arg);
    }
    return std::nullopt;
  }

 private:
  using setter = std::function<bool(const std::string&)>;

  void add(std::string name, setter set) { options_.emplace_back(std::move(name), std::move(set)); }

  const std::pair<std::string, setter>* find(const std::string& name) const {
    for (const auto& option : options_) {
      if (option.first == name) return &option;
    }
    return nullptr;
  }

  int error(const std::string& message) const {
    std::cerr << program_ << ": " << message << "\n\n" << usage_;
    return 2;
  }

  // The whole of `text` as a finite number.
  static bool parse_number(const std::string& text, double& out) {
    char* end = nullptr;
    out = std::strtod(text.c_str(), &end);
    return !text.empty() && end == text.c_str() + text.size() && std::isfinite(out);
  }

  std::string program_;
  std::string usage_;
  std::vector<std::pair<std::string, setter>> options_;
  std::vector<std::string>* positional_ = nullptr;
  std::vector<std::string>* rest_ = nullptr;
};

}  // namespace examples
