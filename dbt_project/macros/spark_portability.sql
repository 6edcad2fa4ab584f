{#- dbt-spark 1.11's dateadd multiplies the interval text without parentheses, so an expression such as
    `period + 1` with datepart 'week' became `period + 1 * 7`. Wrap it, then use dbt-spark's own macro. -#}
{% macro spark__dateadd(datepart, interval, from_date_or_timestamp) -%}
    {{ dbt.spark__dateadd(datepart, '(' ~ interval ~ ')', from_date_or_timestamp) }}
{%- endmacro %}
