-- wrk script: POST the same JSON body to every request (thaw echo and the nginx baseline).
wrk.method = "POST"
wrk.body = '{"inputs":[[0.5,1.5,2.5,3.5]],"id":"bench"}'
wrk.headers["Content-Type"] = "application/json"
