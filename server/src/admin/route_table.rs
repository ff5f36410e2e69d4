//! The admin router's table of paths: every `route` call goes through it, so the paths the
//! router serves can be listed without serving them, and the OpenAPI document's own test
//! (`openapi::tests`) checks that each one is documented.

use std::fmt;

use axum::Router;
use axum::routing::MethodRouter;

use super::AppState;

/// An axum router that remembers the paths given to it.
pub(crate) struct RouteTable {
    router: Router<AppState>,
    paths: Vec<String>,
}

impl fmt::Debug for RouteTable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RouteTable")
            .field("paths", &self.paths)
            .finish_non_exhaustive()
    }
}

impl RouteTable {
    pub(crate) fn new() -> Self {
        RouteTable {
            router: Router::new(),
            paths: Vec::new(),
        }
    }

    /// Adds a route, as `Router::route` does.
    pub(crate) fn route(mut self, path: &str, method_router: MethodRouter<AppState>) -> Self {
        self.paths.push(path.to_string());
        self.router = self.router.route(path, method_router);
        self
    }

    /// The paths routed so far, in the order they were added.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn paths(&self) -> &[String] {
        &self.paths
    }

    pub(crate) fn into_router(self) -> Router<AppState> {
        self.router
    }
}
