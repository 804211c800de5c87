/* rt_version.h — the product version, reported by `thaw --version`, GET /v2 and logs. */
#ifndef THAW_RT_VERSION_H
#define THAW_RT_VERSION_H
#define THAW_VERSION "0.1.0"
#endif
