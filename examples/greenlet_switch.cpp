// Explicit switches between two greenlets: the seed's func1/func2, printing 12, 56, 34, 78.
//
// The python original:
//   gr1 = greenlet(func1)   # func1: print(12); gr2.switch(); print(34); gr2.switch()
//   gr2 = greenlet(func2)   # func2: print(56); gr1.switch(); print(78)
//   gr1.switch()
#include <iostream>

#include <greenev/greenlet.hpp>

int main() {
  // Declared first so that each function can name the other greenlet.
  greenev::greenlet gr1;
  greenev::greenlet gr2;

  gr1 = greenev::greenlet([&] {
    std::cout << 12 << '\n';
    gr2.switch_to();
    std::cout << 34 << '\n';
    gr2.switch_to();  // never returns: gr2 finishes and its parent (main) resumes
  });
  gr2 = greenev::greenlet([&] {
    std::cout << 56 << '\n';
    gr1.switch_to();
    std::cout << 78 << '\n';
  });

  gr1.switch_to();  // nothing runs until the first switch

  // gr2 is dead; gr1 is still suspended in its second switch_to(). Python would
  // leave it there; here dropping its last handle (end of scope) raises
  // greenlet_exit at that point, so anything on its stack is destroyed properly.
  return 0;
}
