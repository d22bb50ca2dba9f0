//! Small pieces every resolver module uses: the request data, errors with
//! the request id, the admin check, and a getter for fields that read one
//! value off their parent.

use async_graphql::Value as Gql;
use async_graphql::dynamic::ResolverContext;
use crm_core::Error;

use crate::context::RequestCtx;
use crate::errors::to_graphql;

pub(crate) type GqlResult<T> = async_graphql::Result<T>;

/// The request data attached by the HTTP layer.
pub(crate) fn request<'a>(ctx: &ResolverContext<'a>) -> GqlResult<&'a RequestCtx> {
    ctx.data::<RequestCtx>()
}

/// A core error as a GraphQL error carrying the request id.
pub(crate) fn fail(rc: &RequestCtx, error: Error) -> async_graphql::Error {
    to_graphql(error, &rc.request_id)
}

/// The request data of a caller whose role administers the tenant.
pub(crate) fn admin<'a>(ctx: &ResolverContext<'a>) -> GqlResult<&'a RequestCtx> {
    let rc = request(ctx)?;
    rc.require_admin().map_err(|e| fail(rc, e))?;
    Ok(rc)
}

pub(crate) fn text(value: impl Into<String>) -> Option<Gql> {
    Some(Gql::String(value.into()))
}

/// The answer of a resolver that needs no waiting: no boxed future (the
/// engine takes the value as it is), which matters for the fields of every
/// record in a page. An error still goes through a future, as the engine
/// has no other way to take one.
pub(crate) fn ready<'a>(result: GqlResult<Option<Gql>>) -> async_graphql::dynamic::FieldFuture<'a> {
    match result {
        Ok(value) => async_graphql::dynamic::FieldFuture::from_value(value),
        Err(error) => async_graphql::dynamic::FieldFuture::new(async move { Err::<Option<Gql>, _>(error) }),
    }
}

/// A field resolved from its parent value of type `$ty`:
/// `getter!(User, "email", TypeRef::named_nn(TypeRef::STRING), |u| text(&u.email))`.
macro_rules! getter {
    ($ty:ty, $name:expr, $type_ref:expr, |$it:ident| $body:expr) => {
        async_graphql::dynamic::Field::new($name, $type_ref, |ctx| {
            async_graphql::dynamic::FieldFuture::new(async move {
                let $it = ctx.parent_value.try_downcast_ref::<$ty>()?;
                Ok($body)
            })
        })
    };
}
pub(crate) use getter;
