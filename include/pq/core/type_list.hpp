// pq/core/type_list.hpp: a minimal compile-time list of types and the operations pq needs on it.
#pragma once
#include <cstddef>
#include <type_traits>

namespace pq {

template <class... Ts>
struct type_list {
  static constexpr std::size_t size = sizeof...(Ts);
  // Calls f(std::type_identity<T>{}) for every T in order; stops early when f returns true.
  template <class Fn>
  static constexpr bool any_of(Fn&& f) { return (f(std::type_identity<Ts>{}) || ...); }
  template <class Fn>
  static constexpr void for_each(Fn&& f) { (f(std::type_identity<Ts>{}), ...); }
};

template <class T, class List> struct contains;
template <class T, class... Ts>
struct contains<T, type_list<Ts...>> : std::bool_constant<(std::is_same_v<T, Ts> || ...)> {};
template <class T, class List> inline constexpr bool contains_v = contains<T, List>::value;

// The types T of List with Pred<T>::value, in order.
template <template <class> class Pred, class List> struct filter;
template <template <class> class Pred> struct filter<Pred, type_list<>> { using type = type_list<>; };
template <template <class> class Pred, class T, class... Ts>
struct filter<Pred, type_list<T, Ts...>> {
  template <class L> struct prepend;
  template <class... Us> struct prepend<type_list<Us...>> { using type = type_list<T, Us...>; };
  using rest = typename filter<Pred, type_list<Ts...>>::type;
  using type = std::conditional_t<Pred<T>::value, typename prepend<rest>::type, rest>;
};
template <template <class> class Pred, class List> using filter_t = typename filter<Pred, List>::type;

}  // namespace pq
