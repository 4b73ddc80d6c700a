// A generator on greenlets: fibonacci() yields by switching to its consumer.
#include <greenev/greenev.hpp>

#include <any>
#include <cstdio>

int main() {
  greenev::greenlet consumer = greenev::current();
  greenev::greenlet fibonacci([&consumer] {
    long a = 0, b = 1;
    for (int i = 0; i < 10; ++i) {
      consumer.switch_to(a);  // yield a; suspends here until resumed
      long next = a + b;
      a = b;
      b = next;
    }
  });
  long sum = 0;
  for (std::any value = fibonacci.switch_to(); fibonacci.active(); value = fibonacci.switch_to()) {
    std::printf("%ld ", std::any_cast<long>(value));
    sum += std::any_cast<long>(value);
  }
  std::printf("\nsum=%ld (greenev %s)\n", sum, GREENEV_VERSION_STRING);
  return sum == 88 ? 0 : 1;
}
