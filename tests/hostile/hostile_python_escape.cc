// Hostile Python through Sandbox::run: reaching outside the sandbox (files, environment, /proc,
// network, processes, signals, the result channel).

#include "hostile_python_fixture.h"

namespace wf::evaluator::hostile {
namespace {

// PermissionError(13, 'Permission denied'): the message is e.args[0], as in the original.
constexpr const char kPermissionDenied[] = "13";

TEST_F(HostilePython, ReadingFilesIsDenied) {
  CallOutcome out = run("def Z1():\n  return open('/etc/passwd').read()");
  EXPECT_STATUS(out, Status::kOk);
  EXPECT_EQ(z22_error(out.output.z22_json), kPermissionDenied);
}

TEST_F(HostilePython, WritingFilesIsDeniedAndNothingAppears) {
  std::string path = temp_path("write");
  CallOutcome out = run("def Z1():\n  with open('" + path +
                        "', 'w') as f:\n    f.write('pwned')\n  return 'written'");
  EXPECT_STATUS(out, Status::kOk);
  EXPECT_EQ(z22_error(out.output.z22_json), kPermissionDenied);
  EXPECT_FALSE(path_exists(path));
  out = run("import os\ndef Z1():\n  os.mkdir('" + path + "')\n  return 'made'");
  EXPECT_EQ(z22_error(out.output.z22_json), kPermissionDenied);
  EXPECT_FALSE(path_exists(path));
}

TEST_F(HostilePython, ListingDirectoriesIsDenied) {
  for (const char* call :
       {"os.listdir('/')", "os.listdir('/proc')", "os.getcwd()", "list(os.scandir('/tmp'))"}) {
    CallOutcome out = run(std::string("import os\ndef Z1():\n  return str(") + call + ")");
    EXPECT_STATUS(out, Status::kOk);
    EXPECT_EQ(z22_error(out.output.z22_json), kPermissionDenied) << call;
  }
}

TEST_F(HostilePython, EnvironmentIsEmpty) {
  CallOutcome out = run(
      "import os\ndef Z1():\n  return str(len(os.environ)) + str(os.getenv('WF_HOSTILE_SECRET'))");
  EXPECT_STATUS(out, Status::kOk);
  EXPECT_EQ(z22_string(out.output.z22_json), "0None");
}

TEST_F(HostilePython, ProcIsClosed) {
  for (const char* file : {"/proc/self/environ", "/proc/self/maps", "/proc/1/cmdline"}) {
    CallOutcome out = run(std::string("def Z1():\n  return open('") + file + "', 'rb').read()");
    EXPECT_STATUS(out, Status::kOk);
    EXPECT_EQ(z22_error(out.output.z22_json), kPermissionDenied) << file;
  }
}

TEST_F(HostilePython, RawSocketsAreForbiddenAndNoConnectionIsMade) {
  LoopbackListener listener;
  CallOutcome out =
      run("import _socket\n"
          "def Z1():\n"
          "  s = _socket.socket(_socket.AF_INET, _socket.SOCK_STREAM)\n"
          "  s.connect(('127.0.0.1', " +
          std::to_string(listener.port()) + "))\n  return 'connected'");
  EXPECT_STATUS(out, Status::kForbidden);
  EXPECT_EQ(listener.connections_seen(), 0);
}

TEST_F(HostilePython, HttpClientsCannotBeImportedOrUsed) {
  LoopbackListener listener;
  std::string url = "http://127.0.0.1:" + std::to_string(listener.port()) + "/";
  for (const char* module : {"urllib.request", "http.client", "socket"}) {
    CallOutcome out = run(std::string("def Z1():\n  import ") + module +
                          "\n  import urllib.request\n  return urllib.request.urlopen('" + url +
                          "').read().decode()");
    // They import as stand-ins (docs/compatibility.md "Modules"); using them is a clear error.
    EXPECT_STATUS(out, Status::kOk);
    EXPECT_EQ(z22_error(out.output.z22_json),
              "urllib.request.urlopen is not available: Wikifunctions code runs without network "
              "access, processes or files")
        << module;
  }
  EXPECT_EQ(listener.connections_seen(), 0);
}

TEST_F(HostilePython, ForkBombIsForbidden) {
  CallOutcome out = run("import os\ndef Z1():\n  while True:\n    os.fork()");
  EXPECT_STATUS(out, Status::kForbidden);
}

TEST_F(HostilePython, ThreadsAreForbidden) {
  // threading.py is not preloaded (it cannot be imported); the built-in _thread can, but clone
  // is forbidden.
  CallOutcome out = run(
      "def Z1():\n"
      "  import threading\n"
      "  t = threading.Thread(target=lambda: None)\n  t.start()\n  t.join()\n  return 'threaded'");
  EXPECT_STATUS(out, Status::kOk);
  EXPECT_NE(z22_error(out.output.z22_json).find("threading"), std::string::npos);
  out = run("import _thread\ndef Z1():\n  _thread.start_new_thread(print, ())\n  return 'x'");
  EXPECT_STATUS(out, Status::kForbidden);
}

TEST_F(HostilePython, ExecAndSubprocessAreForbidden) {
  std::string path = temp_path("exec");
  CallOutcome out =
      run("import os\ndef Z1():\n  os.execv('/bin/sh', ['sh', '-c', 'touch " + path + "'])");
  EXPECT_STATUS(out, Status::kForbidden);
  out = run("import os\ndef Z1():\n  return str(os.system('touch " + path + "'))");
  EXPECT_STATUS(out, Status::kForbidden);
  out = run("import _posixsubprocess, os\ndef Z1():\n  os.posix_spawn('/bin/touch', ['touch', '" +
            path + "'], {})\n  return 'spawned'");
  EXPECT_STATUS(out, Status::kForbidden);
  out = run("def Z1():\n  import subprocess\n  subprocess.run(['touch', '" + path +
            "'])\n  return 'ran'");
  EXPECT_STATUS(out, Status::kOk);  // subprocess.py cannot even be imported
  EXPECT_NE(z22_error(out.output.z22_json).find("subprocess"), std::string::npos);
  EXPECT_FALSE(path_exists(path));
}

TEST_F(HostilePython, KillingOtherProcessesIsForbidden) {
  int zygote = sandbox_->stats().zygote_pid;
  ASSERT_GT(zygote, 0);
  for (std::string target : {std::string("os.getppid()"), std::string("1"),
                             std::to_string(::getpid()), std::to_string(zygote)}) {
    CallOutcome out = run("import os, signal\ndef Z1():\n  os.kill(" + target +
                          ", signal.SIGKILL)\n  return 'sent'");
    EXPECT_STATUS(out, Status::kForbidden) << target;
  }
  EXPECT_EQ(::kill(zygote, 0), 0) << "the zygote must still be alive";
  EXPECT_EQ(sandbox_->stats().zygote_pid, zygote);
}

TEST_F(HostilePython, CtypesIsNotAvailable) {
  CallOutcome out =
      run("def Z1():\n  import ctypes\n  ctypes.string_at(0)\n  return 'segfaulted?'");
  EXPECT_STATUS(out, Status::kOk);
  EXPECT_NE(z22_error(out.output.z22_json).find("ctypes"), std::string::npos)
      << z22_error(out.output.z22_json);
}

TEST_F(HostilePython, ForgingTheResultChannelIsDetected) {
  CallOutcome out =
      run("import os\ndef Z1():\n  os.write(3, b'WFRS' + b'\\x00' * 200)\n  return 'forged'");
  EXPECT_STATUS(out, Status::kForbidden);
}

TEST_F(HostilePython, ClosingTheChannelIsForbidden) {
  CallOutcome out = run("import os\ndef Z1():\n  os.close(3)\n  return 'closed'");
  EXPECT_STATUS(out, Status::kForbidden);
}

TEST_F(HostilePython, ResourceLimitsCannotBeRaised) {
  CallOutcome out = run("def Z1():\n  import resource\n  return 'imported'");
  EXPECT_STATUS(out, Status::kOk);  // resource is not preloaded (and prlimit64 is forbidden)
  EXPECT_NE(z22_error(out.output.z22_json).find("resource"), std::string::npos);
}

}  // namespace
}  // namespace wf::evaluator::hostile
