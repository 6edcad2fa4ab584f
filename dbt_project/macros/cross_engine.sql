{#- The few places where DuckDB and Spark SQL really differ; everything else uses dbt's cross-database macros. -#}

{% macro json_text(column, path) -%}
    {{ return(adapter.dispatch('json_text', 'huaxiang')(column, path)) }}
{%- endmacro %}

{% macro default__json_text(column, path) -%}
    json_extract_string({{ column }}, '$.{{ path }}')
{%- endmacro %}

{% macro spark__json_text(column, path) -%}
    get_json_object({{ column }}, '$.{{ path }}')
{%- endmacro %}

{#- Several JSON paths of one document as a list of text, parsing the document once (per-path extraction
    parses it again for every path: 3.5x slower on 1M events). Read items with list_item(list, n). -#}
{% macro json_texts(column, paths) -%}
    {{ return(adapter.dispatch('json_texts', 'huaxiang')(column, paths)) }}
{%- endmacro %}

{% macro default__json_texts(column, paths) -%}
    json_extract_string({{ column }}, [{% for path in paths %}'$.{{ path }}'{{ ", " if not loop.last }}{% endfor %}])
{%- endmacro %}

{% macro spark__json_texts(column, paths) -%}
    array({% for path in paths %}get_json_object({{ column }}, '$.{{ path }}'){{ ", " if not loop.last }}{% endfor %})
{%- endmacro %}

{#- The n-th item (1-based) of a list. -#}
{% macro list_item(list, position) -%}
    {{ return(adapter.dispatch('list_item', 'huaxiang')(list, position)) }}
{%- endmacro %}

{% macro default__list_item(list, position) -%}
    {{ list }}[{{ position }}]
{%- endmacro %}

{% macro spark__list_item(list, position) -%}
    element_at({{ list }}, {{ position }})
{%- endmacro %}

{#- A struct of columns, named after them; structs compare field by field, so min() of one picks a whole row
    by several ordering columns in one hash aggregate, where row_number() would sort. -#}
{% macro struct_of(columns) -%}
    {{ return(adapter.dispatch('struct_of', 'huaxiang')(columns)) }}
{%- endmacro %}

{% macro default__struct_of(columns) -%}
    { {%- for column in columns %}'{{ column }}': {{ column }}{{ ", " if not loop.last }}{% endfor -%} }
{%- endmacro %}

{% macro spark__struct_of(columns) -%}
    named_struct({%- for column in columns %}'{{ column }}', {{ column }}{{ ", " if not loop.last }}{% endfor -%})
{%- endmacro %}

{#- UTC timestamp -> wall-clock time in the business timezone (for calendar days and hours). -#}
{% macro to_local_time(column) -%}
    {{ return(adapter.dispatch('to_local_time', 'huaxiang')(column)) }}
{%- endmacro %}

{% macro default__to_local_time(column) -%}
    (({{ column }}) at time zone 'UTC') at time zone '{{ var("timezone") }}'
{%- endmacro %}

{% macro spark__to_local_time(column) -%}
    from_utc_timestamp({{ column }}, '{{ var("timezone") }}')
{%- endmacro %}

{% macro local_date(column) -%}
    cast({{ to_local_time(column) }} as date)
{%- endmacro %}

{#- The as-of date as a DATE literal; the exclusive UTC upper bound of data it may see. -#}
{% macro as_of_date() -%}
    {%- if execute and not var('as_of') -%}
        {{ exceptions.raise_compiler_error("var 'as_of' (YYYY-MM-DD) is required: run through `huaxiang run` or pass --vars") }}
    {%- endif -%}
    cast('{{ var("as_of") or "1970-01-01" }}' as date)
{%- endmacro %}

{#- Exact median: DuckDB has median(), Spark has percentile(). -#}
{% macro median(expression) -%}
    {{ return(adapter.dispatch('median', 'huaxiang')(expression)) }}
{%- endmacro %}

{% macro default__median(expression) -%}
    median({{ expression }})
{%- endmacro %}

{% macro spark__median(expression) -%}
    percentile({{ expression }}, 0.5)
{%- endmacro %}

{#- Hour of day (0-23) in the business timezone. -#}
{% macro local_hour(column) -%}
    extract(hour from {{ to_local_time(column) }})
{%- endmacro %}

{#- Sorted list of strings per group: DuckDB list(), Spark collect_list. -#}
{% macro sorted_string_list(column) -%}
    {{ return(adapter.dispatch('sorted_string_list', 'huaxiang')(column)) }}
{%- endmacro %}

{% macro default__sorted_string_list(column) -%}
    list({{ column }} order by {{ column }})
{%- endmacro %}

{% macro spark__sorted_string_list(column) -%}
    sort_array(collect_list({{ column }}))
{%- endmacro %}

{#- Event- and order-sized models are incremental where the adapter can delete and insert by key (DuckDB);
    elsewhere (Spark on Parquet tables, which can only append or overwrite) they are rebuilt as tables. -#}
{% macro incremental_if_supported() -%}
    {{ return('incremental' if target.type == 'duckdb' else 'table') }}
{%- endmacro %}

{#- An incremental model keeps its watermark columns; a table built before they existed needs one full
    rebuild, which says so instead of failing on a missing column. -#}
{% macro require_watermark_columns(columns) -%}
    {%- if execute and is_incremental() -%}
        {%- set existing = adapter.get_columns_in_relation(this) | map(attribute='name') | map('lower') | list -%}
        {%- for column in columns if column not in existing -%}
            {{ exceptions.raise_compiler_error(this ~ " was built before it kept '" ~ column ~ "'; rebuild it once with `huaxiang run --full-refresh`") }}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}

{#- Sums and means of measured seconds, exact and so the same on every run and engine: a parallel double
    sum adds in whatever order the threads finish, which changes the last bits from run to run. Values are
    summed as decimals (microsecond precision) and only the result is a double. -#}
{% macro exact_sum(expression) -%}
cast(sum(cast({{ expression }} as decimal(38, 6))) as double)
{%- endmacro %}

{% macro exact_avg(expression) -%}
{{ exact_sum(expression) }} / nullif(count({{ expression }}), 0)
{%- endmacro %}
