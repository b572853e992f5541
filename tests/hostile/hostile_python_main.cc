// hostile_python_test is also the Python sandbox's supervisor image.
#include "../support/sandbox_test_main.h"
#include "evaluator/executors/python/python_runtime.h"

int main(int argc, char** argv) {
  using namespace wf::evaluator;
  static const RuntimeEntry kRuntimes[] = {{"python", make_python_runtime}};
  return wf::evaluator::testing::sandbox_test_main(argc, argv, kRuntimes);
}
