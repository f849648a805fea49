#ifndef CFUZZERSUPPORT_H
#define CFUZZERSUPPORT_H

#include <stddef.h>
#include <stdint.h>

/// libFuzzer's entry point for programs that keep their own `main`: parses libFuzzer's flags from
/// argv and fuzzes `callback`. The fuzzer runtime that `-sanitize=fuzzer` links defines it.
int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));

#endif
