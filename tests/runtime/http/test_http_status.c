/* test_http_status.c — reason phrases of rt_http_status_text, including the ones the daemon
 * sends for an unmet Expect (417) and a client that left (499). */
#include "runtime/http/rt_http.h"
#include "tests/t.h"

static void test_status_texts(void)
{
	T_EQ_STR(rt_http_status_text(200), "OK");
	T_EQ_STR(rt_http_status_text(417), "Expectation Failed");
	T_EQ_STR(rt_http_status_text(499), "Client Closed Request");
	T_EQ_STR(rt_http_status_text(501), "Not Implemented");
	T_EQ_STR(rt_http_status_text(505), "HTTP Version Not Supported");
	T_EQ_STR(rt_http_status_text(299), "Unknown");
}

void t_main(void)
{
	T_RUN(test_status_texts);
}
