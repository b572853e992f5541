// hostile_javascript_test is also the JavaScript sandbox's supervisor image.
#include "../support/sandbox_test_main.h"
#include "evaluator/executors/javascript/javascript_runtime.h"

int main(int argc, char** argv) {
  using namespace wf::evaluator;
  static const RuntimeEntry kRuntimes[] = {
      {"javascript", +[] { return make_javascript_runtime(); }}};
  return wf::evaluator::testing::sandbox_test_main(argc, argv, kRuntimes);
}
