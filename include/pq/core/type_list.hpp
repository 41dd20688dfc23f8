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

}  // namespace pq
