#include "CFuzzerSupport.h"

// Leaks LeakSanitizer should not report, read by the sanitizer runtime at start-up. Each is a leak
// in the toolchain's libraries, not in Roundup:
// - FoundationXML's XMLParser leaks the CFError strings it builds for every libxml2 parse error
//   (`_structuredErrorFunc` -> `_CFErrorCreateFromXMLInterface`), so every malformed XML push leaks.
const char *__lsan_default_suppressions(void) {
    return "leak:_CFErrorCreateFromXMLInterface\n";
}
