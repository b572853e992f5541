#pragma once
// The Asio side of wf::http, for the few translation units that put their own I/O on the server's
// event loop (sandbox descriptors and timers, outbound requests from coroutines). It includes
// Asio: keep it out of headers that many files include.

#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/io_context.hpp>
#include <memory>
#include <utility>

#include "wf/http/client.h"
#include "wf/http/server.h"

namespace wf::http {

// HttpClient::async_send with any Asio completion token: `co_await async_send(client, req,
// cancel, boost::asio::use_awaitable)` in a C++20 coroutine, `async_send(..., yield)` in a stackful
// one (boost::asio::spawn), or a plain callback. The completion runs on the token's associated
// executor (the coroutine's), signature void(ClientResult).
template <class CompletionToken>
auto async_send(HttpClient& client, ClientRequest request, std::shared_ptr<Cancellation> cancel,
                CompletionToken&& token) {
  auto initiation = [&client](auto handler, ClientRequest req, std::shared_ptr<Cancellation> c) {
    auto executor = boost::asio::get_associated_executor(handler);
    // std::function needs a copyable callable; the handler may be move-only.
    auto shared = std::make_shared<decltype(handler)>(std::move(handler));
    client.async_send(std::move(req), std::move(c),
                      [shared, executor](ClientResult result) mutable {
                        boost::asio::dispatch(executor, [shared, r = std::move(result)]() mutable {
                          std::move (*shared)(std::move(r));
                        });
                      });
  };
  return boost::asio::async_initiate<CompletionToken, void(ClientResult)>(
      std::move(initiation), token, std::move(request), std::move(cancel));
}

}  // namespace wf::http
