#!/usr/bin/env python3
"""Runs Python unittest names (modules, classes or methods) for ctest, so that skips are visible.

Every skipped test is listed with its reason at the end. Exit status: 1 when something failed,
77 when nothing ran because everything was skipped (ctest's SKIP_RETURN_CODE shows the test as
"Skipped", not "Passed"), 0 otherwise. A skip-only run of a part of a suite is registered as its
own ctest test (see tests/integration/CMakeLists.txt), so it is never hidden inside a pass.

    run_unittest.py test_examples.StructureTest test_examples.OfflineSemanticsTest
    run_unittest.py --skip "reason"   # registers a test whose prerequisite is absent
"""
import sys
import unittest

SKIP = 77


def main(argv):
    if len(argv) == 2 and argv[0] == "--skip":
        print(f"SKIPPED: {argv[1]}")
        return SKIP
    sys.path.insert(0, ".")
    suite = unittest.defaultTestLoader.loadTestsFromNames(argv)
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(suite)
    for test, reason in result.skipped:
        print(f"SKIPPED: {test.id()}: {reason}")
    if not result.wasSuccessful():
        return 1
    ran = result.testsRun - len(result.skipped)
    if result.testsRun > 0 and ran == 0:
        print(f"SKIPPED: all {result.testsRun} tests of {' '.join(argv)} were skipped")
        return SKIP
    print(f"ran {ran} tests, {len(result.skipped)} skipped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
